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
        Settings.Builder settings = Settings.builder();
        NodeLauncher.prepare(args[0], args[1], args.length > 2 ? args[2] : "0").forEach(settings::put);
        NodeLauncher.runUntilKilled(new OpenSearchNode(settings.build()).start());
    }
}
