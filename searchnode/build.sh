#!/usr/bin/env bash
# Resolve the jars of the live-test search nodes from Maven Central into ~/.m2 and
# searchnode/build/<product>/lib, and compile their launchers with plain javac.
#   searchnode/build.sh [opensearch|elasticsearch|opensearch3 ...]   (default: the first two)
# opensearch3 (OpenSearch 3.x, Java 21+) compiles and resolves with $JAVA21_HOME, by default
# /usr/lib/jvm/temurin-25-jdk-amd64; run it with that java and COOCCUR_OPENSEARCH_URL.
# Done once: jars are resolved again when the pom changes, launchers compiled when they change.
set -euo pipefail
cd "$(dirname "$0")"
command -v mvn >/dev/null && command -v javac >/dev/null || {
  echo "searchnode: needs mvn and javac (Java 17)" >&2; exit 1; }

build() {  # product, launcher class
  local product=$1 main=$2 out=build/$1
  if [ ! -f "$out/.resolved" ] || [ "pom-$product.xml" -nt "$out/.resolved" ]; then
    echo "searchnode: resolving $product jars (Maven Central) ..." >&2
    rm -rf "$out"
    JAVA_HOME=${JAVA_HOME_FOR:-${JAVA_HOME:-}} mvn -q -B -f "pom-$product.xml" dependency:copy-dependencies
    if [ "$product" = elasticsearch ]; then
      # Elasticsearch 8 loads netty4 only as a module (a directory of its own with a descriptor).
      local version mod=$out/modules/transport-netty4
      version=$(ls "$out"/lib/elasticsearch-[0-9]*.jar | sed 's/.*elasticsearch-\(.*\)\.jar/\1/')
      mkdir -p "$mod"
      mv "$out"/lib/transport-netty4-*.jar "$out"/lib/netty-*.jar "$mod"/
      printf '%s\n' "description=Netty 4 based transport" "version=$version" "name=transport-netty4" \
        "classname=org.elasticsearch.transport.netty4.Netty4Plugin" "java.version=17" \
        "elasticsearch.version=$version" "extended.plugins=" "has.native.controller=false" \
        > "$mod/plugin-descriptor.properties"
    fi
    touch "$out/.resolved"
  fi
  # NodeLauncher.java: the launchers' shared plain-Java part, compiled beside each.
  if [ ! -f "$out/classes/$main.class" ] || [ "$main.java" -nt "$out/classes/$main.class" ] \
     || [ NodeLauncher.java -nt "$out/classes/$main.class" ]; then
    mkdir -p "$out/classes"
    "${JAVA_HOME_FOR:+$JAVA_HOME_FOR/bin/}javac" -d "$out/classes" -cp "$out/lib/*" "$main.java" NodeLauncher.java
  fi
}

for product in "${@:-opensearch elasticsearch}"; do
  for p in $product; do
    case $p in
      opensearch) build opensearch OpenSearchNode ;;
      elasticsearch) build elasticsearch ElasticsearchNode ;;
      opensearch3) JAVA_HOME_FOR=${JAVA21_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64} build opensearch3 OpenSearch3Node ;;
      *) echo "searchnode: unknown product $p" >&2; exit 2 ;;
    esac
  done
done
