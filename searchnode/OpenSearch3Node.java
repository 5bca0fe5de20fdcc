import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.opensearch.Version;
import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.PluginInfo;

/**
 * OpenSearchNode for OpenSearch 3.x (Java 21+; not built by default: searchnode/build.sh
 * opensearch3). 3.x renamed the module plugins (Netty4ModulePlugin, MapperExtrasModulePlugin,
 * ReindexModulePlugin) and Node's protected constructor takes their PluginInfo.
 *
 * Usage: java -cp 'lib/*:classes' OpenSearch3Node HOME_DIR HTTP_PORT
 * Prints "started" once the node has started; runs until killed.
 */
public final class OpenSearch3Node extends Node {
    private OpenSearch3Node(Settings settings) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "cooccur-test"),
              plugins(), true);
    }

    private static List<PluginInfo> plugins() {
        List<PluginInfo> out = new ArrayList<>();
        for (String c : List.of("org.opensearch.transport.Netty4ModulePlugin",
                                "org.opensearch.index.mapper.MapperExtrasModulePlugin",
                                "org.opensearch.index.reindex.ReindexModulePlugin")) {
            out.add(new PluginInfo(c, c, "1", Version.CURRENT, "21", c, List.of(), false));
        }
        return out;
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
        Node node = new OpenSearch3Node(settings);
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
