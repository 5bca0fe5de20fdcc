import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;

import org.opensearch.common.settings.Settings;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

/**
 * One OpenSearch node in this JVM for cooccur's live tests: HTTP on loopback, a single-node
 * cluster, no security manager plugins, data under the given directory.
 *
 * Usage: java -cp 'lib/*:classes' OpenSearchNode HOME_DIR HTTP_PORT
 * Prints "started" once the node has started; runs until killed.
 * Node's plugin-list constructor is protected: a subclass hands it plugins from the classpath,
 * as the test framework's MockNode does: Netty4Plugin (HTTP) and MapperExtrasPlugin
 * (rank_feature / rank_features, the correlator weights) and ReindexPlugin (`_reindex`, the
 * copy of `cooccur index --changed-only`).
 */
public final class OpenSearchNode extends Node {
    private OpenSearchNode(Settings settings) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "cooccur-test"),
              List.of(Netty4Plugin.class, MapperExtrasPlugin.class, ReindexPlugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "cooccur-test")
            .put("node.name", "cooccur-test")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args.length > 2 ? args[2] : "0")
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            // A test node: no disk watermarks (CI disks may be fuller than 85%).
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        Node node = new OpenSearchNode(settings);
        node.start();
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
