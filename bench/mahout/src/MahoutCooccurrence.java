import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

import org.apache.mahout.math.cf.ParOpts;
import org.apache.mahout.math.cf.SimilarityAnalysis$;
import org.apache.mahout.math.indexeddataset.BiDictionary;
import org.apache.mahout.math.indexeddataset.DefaultIndexedDatasetWriteSchema$;
import org.apache.mahout.math.indexeddataset.IndexedDataset;
import org.apache.mahout.sparkbindings.SparkDistributedContext;
import org.apache.mahout.sparkbindings.indexeddataset.IndexedDatasetSpark;
import org.apache.mahout.sparkbindings.package$;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.storage.StorageLevel;

import scala.Option;
import scala.Tuple2;

/**
 * Apache Mahout's cooccurrence job (what spark-itemsimilarity runs) on a CSV of
 * "user,action,item" lines, called from plain Java.
 *
 * The reading mirrors Mahout's ItemSimilarityDriver / TDIndexedDatasetReader: the primary
 * action's IndexedDataset is built first (its users are the row dictionary), each secondary
 * action's with that dictionary as existingRowIDs (so IndexedDatasetSpark.apply drops the
 * secondary events of users without a primary event), every matrix given the primary's row
 * cardinality; then SimilarityAnalysis.cooccurrencesIDSs and IndexedDatasetSpark.dfsWrite
 * with Mahout's default text schema ("item<TAB>other:llr other:llr ..."), one directory per
 * action under the output directory.
 *
 * Usage: MahoutCooccurrence INPUT OUTPUT PRIMARY[,SECONDARY...] MASTER
 *        MAX_SIMILARITIES_PER_ITEM MAX_INTERACTIONS SEED RUNS
 * Runs the job RUNS times in one SparkContext; prints one JSON line of timings (seconds).
 */
public final class MahoutCooccurrence {

    private MahoutCooccurrence() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 8) {
            System.err.println("usage: MahoutCooccurrence INPUT OUTPUT PRIMARY[,SECONDARY...] MASTER "
                + "MAX_SIMILARITIES_PER_ITEM MAX_INTERACTIONS SEED RUNS");
            System.exit(2);
        }
        String input = args[0];
        String output = args[1];
        List<String> actions = Arrays.asList(args[2].split(","));
        String master = args[3];
        int maxSimilarities = Integer.parseInt(args[4]);
        int maxInteractions = Integer.parseInt(args[5]);
        int seed = Integer.parseInt(args[6]);
        int runs = Integer.parseInt(args[7]);

        long t0 = System.nanoTime();
        // mahoutSparkContext sets the Kryo serializer and Mahout's Kryo registrator, as
        // spark-itemsimilarity does; addMahoutJars=false: everything is on the classpath.
        SparkConf conf = new SparkConf()
            .set("spark.ui.enabled", "false")
            .set("spark.driver.host", "127.0.0.1")
            .set("spark.driver.bindAddress", "127.0.0.1");
        SparkDistributedContext sdc = package$.MODULE$.mahoutSparkContext(
            master, "mahout-cooccurrence", package$.MODULE$.mahoutSparkContext$default$3(), conf, false);
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(sdc.sc());
        jsc.setLogLevel("WARN");
        double contextSeconds = (System.nanoTime() - t0) / 1e9;

        // Every run starts from the text file (nothing cached between runs); the first run
        // is the JVM's cold one, the caller treats it as the warm-up.
        StringBuilder json = new StringBuilder();
        json.append(String.format(Locale.ROOT, "{\"context_seconds\": %.3f, \"spark\": \"%s\", \"runs\": [",
            contextSeconds, org.apache.spark.package$.MODULE$.SPARK_VERSION()));
        for (int run = 0; run < runs; run++) {
            for (String action : actions) {
                deleteTree(Paths.get(output, action));
            }
            json.append(run > 0 ? ", " : "").append(runOnce(sdc, jsc, input, output, actions,
                maxSimilarities, maxInteractions, seed));
            System.err.println("mahout run " + (run + 1) + "/" + runs + " done");
        }
        jsc.stop();
        // The JVM's own peak RSS: a sampler of the process tree would also count the
        // short-lived processes Hadoop's local file system forks (they share the heap's pages).
        json.append(String.format(Locale.ROOT, "], \"peak_rss_mb\": %.1f}", peakRssKb() / 1024.0));
        System.out.println(json);
    }

    /** Read, cooccurrencesIDSs, write; one JSON object of seconds and counts. */
    private static String runOnce(SparkDistributedContext sdc, JavaSparkContext jsc, String input,
            String output, List<String> actions, int maxSimilarities, int maxInteractions, int seed) {
        long t1 = System.nanoTime();
        JavaRDD<String[]> rows = jsc.textFile(input)
            .map(line -> line.split(","))
            .persist(StorageLevel.MEMORY_ONLY());
        List<IndexedDataset> datasets = new ArrayList<>();
        Option<BiDictionary> rowIDs = Option.empty();
        for (String action : actions) {
            JavaPairRDD<String, String> pairs = rows
                .filter(r -> r[1].equals(action))
                .mapToPair(r -> new Tuple2<>(r[0], r[2]));
            IndexedDatasetSpark ids = IndexedDatasetSpark.apply(pairs.rdd(), rowIDs, sdc.sc());
            if (rowIDs.isEmpty()) {
                rowIDs = Option.apply(ids.rowIDs());
            }
            datasets.add(ids);
        }
        int users = rowIDs.get().size();
        for (int i = 0; i < datasets.size(); i++) {
            datasets.set(i, datasets.get(i).newRowCardinality(users));
        }
        double readSeconds = (System.nanoTime() - t1) / 1e9;

        long t2 = System.nanoTime();
        scala.collection.immutable.List<IndexedDataset> result = SimilarityAnalysis$.MODULE$.cooccurrencesIDSs(
            datasets.toArray(new IndexedDataset[0]), seed, maxSimilarities, maxInteractions,
            new ParOpts(-1, -1, true));
        StringBuilder items = new StringBuilder();
        for (int i = 0; i < actions.size(); i++) {
            result.apply(i).dfsWrite(Paths.get(output, actions.get(i)).toString(),
                DefaultIndexedDatasetWriteSchema$.MODULE$, sdc);
            items.append(i > 0 ? ", " : "").append('"').append(actions.get(i)).append("\": ")
                .append(datasets.get(i).columnIDs().size());
        }
        double computeSeconds = (System.nanoTime() - t2) / 1e9;
        rows.unpersist(false);
        return String.format(Locale.ROOT,
            "{\"read_seconds\": %.3f, \"compute_seconds\": %.3f, \"seconds\": %.3f, \"users\": %d, "
                + "\"items\": {%s}}",
            readSeconds, computeSeconds, readSeconds + computeSeconds, users, items);
    }

    private static long peakRssKb() throws IOException {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toArray(Path[]::new)) {
                Files.delete(p);
            }
        }
    }
}
