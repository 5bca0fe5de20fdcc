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
        Settings.Builder settings = Settings.builder();
        NodeLauncher.prepare(args[0], args[1], args.length > 2 ? args[2] : "0").forEach(settings::put);
        NodeLauncher.runUntilKilled(new OpenSearch3Node(settings.build()).start());
    }
}
