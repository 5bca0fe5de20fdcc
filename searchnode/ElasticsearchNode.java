import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;

/**
 * One Elasticsearch node in this JVM for cooccur's live tests (the twin of OpenSearchNode).
 *
 * Usage: java -cp 'lib/*:classes' ElasticsearchNode HOME_DIR HTTP_PORT MODULES_DIR
 * Elasticsearch 8 has no public constructor taking plugins from the classpath, so the netty4
 * transport is loaded as a module: MODULES_DIR holds transport-netty4/ (its jars and a
 * plugin-descriptor.properties, laid out by searchnode/build.sh), linked as HOME_DIR/modules.
 * Prints "started" once the node has started; runs until killed.
 */
public final class ElasticsearchNode {
    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder();
        NodeLauncher.prepare(args[0], args[1], "0", "plugins").forEach(builder::put);
        Settings settings = builder.build();
        Path modules = Path.of(settings.get("path.home"), "modules");
        if (!Files.exists(modules)) {
            Files.createSymbolicLink(modules, Path.of(args[2]).toAbsolutePath());
        }
        // What the distribution's bootstrap does first: the server's own logging facade.
        LogConfigurator.configureESLogging();
        LogConfigurator.configureWithoutConfig(settings);
        Node node = new Node(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "cooccur-test"));
        NodeLauncher.runUntilKilled(node.start());
    }
}
