import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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
 *        MAX_SIMILARITIES_PER_ITEM MAX_INTERACTIONS SEED
 * Prints one JSON line of timings (seconds) on stdout.
 */
public final class MahoutCooccurrence {

    private MahoutCooccurrence() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 7) {
            System.err.println("usage: MahoutCooccurrence INPUT OUTPUT PRIMARY[,SECONDARY...] MASTER "
                + "MAX_SIMILARITIES_PER_ITEM MAX_INTERACTIONS SEED");
            System.exit(2);
        }
        String input = args[0];
        String output = args[1];
        List<String> actions = Arrays.asList(args[2].split(","));
        String master = args[3];
        int maxSimilarities = Integer.parseInt(args[4]);
        int maxInteractions = Integer.parseInt(args[5]);
        int seed = Integer.parseInt(args[6]);

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
        Map<String, Long> lines = new LinkedHashMap<>();
        for (int i = 0; i < actions.size(); i++) {
            String dest = Paths.get(output, actions.get(i)).toString();
            result.apply(i).dfsWrite(dest, DefaultIndexedDatasetWriteSchema$.MODULE$, sdc);
            lines.put(actions.get(i), result.apply(i).matrix().nrow());
        }
        double computeSeconds = (System.nanoTime() - t2) / 1e9;
        rows.unpersist(false);
        jsc.stop();

        StringBuilder json = new StringBuilder();
        json.append(String.format(java.util.Locale.ROOT,
            "{\"context_seconds\": %.3f, \"read_seconds\": %.3f, \"compute_seconds\": %.3f, "
                + "\"job_seconds\": %.3f, \"users\": %d, \"spark\": \"%s\", \"rows\": {",
            contextSeconds, readSeconds, computeSeconds, readSeconds + computeSeconds, users,
            org.apache.spark.package$.MODULE$.SPARK_VERSION()));
        int n = 0;
        for (Map.Entry<String, Long> e : lines.entrySet()) {
            json.append(n++ > 0 ? ", " : "").append('"').append(e.getKey()).append("\": ").append(e.getValue());
        }
        json.append("}}");
        System.out.println(json);
        Files.write(Paths.get(output, "timings.json"), json.toString().getBytes(StandardCharsets.UTF_8));
    }
}
