import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The plain-Java part of the live-test launchers (OpenSearchNode, ElasticsearchNode,
 * OpenSearch3Node), compiled beside each by searchnode/build.sh: the node's directories, the
 * settings every test node shares, and the run until killed. Only java.*: each product's
 * Settings and Node classes stay in its launcher.
 */
final class NodeLauncher {
    private NodeLauncher() {
    }

    /**
     * Make HOME_DIR (absolute) with data/, logs/ and the `more` directories in it; return the
     * settings every test node has: a single-node cluster on loopback, paths under HOME_DIR,
     * HTTP at `httpPort`, netty4, no disk watermarks.
     */
    static Map<String, String> prepare(String dir, String httpPort, String transportPort, String... more)
            throws IOException {
        Path home = Path.of(dir).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        for (String d : more) {
            Files.createDirectories(home.resolve(d));
        }
        Map<String, String> s = new LinkedHashMap<>();
        s.put("path.home", home.toString());
        s.put("path.data", home.resolve("data").toString());
        s.put("path.logs", home.resolve("logs").toString());
        s.put("cluster.name", "cooccur-test");
        s.put("node.name", "cooccur-test");
        s.put("discovery.type", "single-node");
        s.put("network.host", "127.0.0.1");
        s.put("http.port", httpPort);
        s.put("transport.port", transportPort);
        s.put("http.type", "netty4");
        s.put("transport.type", "netty4");
        // A test node: no disk watermarks (CI disks may be fuller than 85%).
        s.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        return s;
    }

    /**
     * Close the started node when the JVM is stopped, print "started" (the handshake line
     * of the node's log) and wait until killed.
     */
    static void runUntilKilled(AutoCloseable node) throws InterruptedException {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                // exiting anyway
            }
        }));
        System.out.println("started");
        System.out.flush();
        Thread.currentThread().join();
    }
}
