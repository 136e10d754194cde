// kvstashd's settings table (server/daemon_settings.cc) and the machinery that generates the TOML
// reader, the flags and the help from it (common/settings.h): every setting is described, its
// default is inside its range, its file and flag forms read the same value, and a bad enum value
// is refused with the list of allowed ones.
#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <filesystem>
#include <set>

#include "common/settings_cli.h"
#include "common/settings_toml.h"
#include "server/daemon_config.h"

namespace kvstash::server {
namespace {

using Setting = settings::Setting<DaemonConfig>;

TEST(DaemonSettingsTest, EverySettingIsDescribedOnceWithItsDefaultInRange) {
  std::set<std::string> keys, flags;
  const DaemonConfig defaults;
  ASSERT_GT(DaemonSettings().size(), 50u);
  for (const Setting& s : DaemonSettings()) {
    SCOPED_TRACE(s.name());
    EXPECT_FALSE(s.key.empty() && s.flag.empty());
    EXPECT_FALSE(s.help.empty());
    if (!s.key.empty()) {
      EXPECT_TRUE(keys.insert(s.key).second) << "key declared twice";
    }
    if (!s.flag.empty()) {
      EXPECT_TRUE(flags.insert(s.flag).second) << "flag declared twice";
    }
    EXPECT_TRUE(s.from_file && s.from_text && s.to_text);
    if (s.in_range) {
      EXPECT_TRUE(s.in_range(defaults).ok()) << s.in_range(defaults).ToString();
    }
    if (s.kind == settings::Kind::kEnum) {
      EXPECT_FALSE(s.allowed.empty());
    }
  }
  EXPECT_TRUE(defaults.Validate().ok()) << defaults.Validate().ToString();
}

// A value other than the default, as a flag spells it and as a TOML literal.
struct Sample {
  std::string text;
  std::string toml;
};

std::vector<Sample> SamplesFor(const Setting& s, const DaemonConfig& defaults) {
  switch (s.kind) {
    case settings::Kind::kString: return {{"h-1.example:7", "\"h-1.example:7\""}};
    case settings::Kind::kBool: {
      const std::string flipped = s.to_text(defaults) == "true" ? "false" : "true";
      return {{flipped, flipped}};
    }
    case settings::Kind::kInteger: return {{"7", "7"}};
    case settings::Kind::kNumber: return {{"0.5", "0.5"}, {"2", "2"}};
    case settings::Kind::kBytes: return {{"3MiB", "\"3MiB\""}, {"4096", "4096"}};
    case settings::Kind::kEnum: {
      std::vector<Sample> all;
      for (const std::string& name : s.allowed) all.push_back({name, "\"" + name + "\""});
      return all;
    }
    case settings::Kind::kList: return {{"a:1,b:2", "[\"a:1\", \"b:2\"]"}};
    case settings::Kind::kCustom: return {{"0660", "\"0660\""}};
  }
  return {};
}

// For every setting with both forms: the flag's text and the file's literal set the same value.
TEST(DaemonSettingsTest, FileAndFlagFormsAgree) {
  const DaemonConfig defaults;
  for (const Setting& s : DaemonSettings()) {
    if (s.key.empty() || s.flag.empty()) continue;
    for (const Sample& sample : SamplesFor(s, defaults)) {
      SCOPED_TRACE(s.flag + " " + sample.text);
      if (!s.switch_value.empty() && sample.text != s.switch_value) continue;  // a switch says one value
      DaemonConfig by_flag = defaults, by_file = defaults;
      ASSERT_TRUE(s.from_text(sample.text, by_flag).ok());
      const toml::table doc = toml::parse("v = " + sample.toml);
      ASSERT_TRUE(s.from_file(settings::detail::ToFileValue(*doc.get("v")), by_file).ok());
      EXPECT_EQ(s.to_text(by_flag), s.to_text(by_file));
      // The value read back is the value written (the help's defaults are read so).
      DaemonConfig again = defaults;
      ASSERT_TRUE(s.from_text(s.to_text(by_flag), again).ok());
      EXPECT_EQ(s.to_text(again), s.to_text(by_flag));
    }
  }
}

// The whole path: a file naming every setting with its default loads, and so do the flags.
TEST(DaemonSettingsTest, DefaultsWrittenOutReadBackTheSame) {
  const DaemonConfig defaults;
  std::string doc, section;
  std::vector<std::string> argv_text = {"kvstashd"};
  for (const Setting& s : DaemonSettings()) {
    const std::string value = s.to_text(defaults);
    if (!s.key.empty()) {
      const std::string table = s.key.substr(0, s.key.find('.'));
      if (table != section) doc += "[" + (section = table) + "]\n";
      std::string literal = value;
      if (s.kind == settings::Kind::kString || s.kind == settings::Kind::kEnum || s.kind == settings::Kind::kBytes ||
          s.kind == settings::Kind::kCustom) {
        literal = "\"" + value + "\"";
      } else if (s.kind == settings::Kind::kList) {
        literal = "[]";
      }
      doc += s.key.substr(s.key.find('.') + 1) + " = " + literal + "\n";
    }
    if (!s.flag.empty() && s.switch_value.empty() && s.kind != settings::Kind::kList && !value.empty()) {
      argv_text.push_back(s.flag);
      argv_text.push_back(value);
    }
  }
  DaemonConfig from_file;
  ASSERT_TRUE(ApplyTomlString(doc, "defaults.toml", from_file).ok()) << doc;
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  Result<DaemonConfig> from_flags = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(from_flags.ok()) << from_flags.status().ToString();
  for (const Setting& s : DaemonSettings()) {
    EXPECT_EQ(s.to_text(from_file), s.to_text(defaults)) << s.name();
    EXPECT_EQ(s.to_text(*from_flags), s.to_text(defaults)) << s.name();
  }
}

TEST(DaemonSettingsTest, ABadEnumValueIsRefusedWithTheAllowedNames) {
  DaemonConfig config;
  const Status file = ApplyTomlString("[dram]\neviction_policy = \"random\"\n", "bad.toml", config);
  EXPECT_EQ(file.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(file.message().find("bad.toml: 'dram.eviction_policy' must be prefix-arc, prefix or lru, not 'random'"),
            std::string::npos)
      << file.message();
  const char* argv[] = {"kvstashd", "--ucx-protocol", "sideways"};
  const Result<DaemonConfig> flag = ParseCommandLine(3, const_cast<char**>(argv));
  EXPECT_EQ(flag.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(flag.status().message().find("--ucx-protocol: must be auto, one-sided or two-sided, not 'sideways'"),
            std::string::npos)
      << flag.status().message();
  EXPECT_EQ(ApplyTomlString("[ssd]\nio_backend = \"aio\"\n", "bad.toml", config).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyTomlString("[server]\nlog_level = 3\n", "bad.toml", config).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.eviction_policy, EvictionPolicyKind::kPrefixArc);  // nothing changed
  ASSERT_TRUE(ApplyTomlString("[ssd]\nio_backend = \"threads\"\n[ucx]\nprotocol = \"two-sided\"\n", "ok.toml", config)
                  .ok());
  EXPECT_EQ(config.ssd_io_backend, SsdIoBackend::kThreads);
  EXPECT_EQ(config.ucx_protocol, DataPlaneProtocol::kTwoSided);
  // The enums reach the tiers as they are: no name is spelled out again past the settings table.
  EXPECT_EQ(config.TierOptions()->dram.eviction_policy, EvictionPolicyKind::kPrefixArc);
  config.ssd_dir = "ssd";
  ASSERT_TRUE(config.TierOptions()->ssd.has_value());
  EXPECT_EQ(config.TierOptions()->ssd->io_backend, SsdIoBackend::kThreads);
}

TEST(DaemonSettingsTest, AValueOutsideItsRangeIsRefusedWhereItIsWritten) {
  DaemonConfig config;
  const Status file = ApplyTomlString("[server]\nthreads = 0\n", "range.toml", config);
  EXPECT_NE(file.message().find("range.toml: server.threads must be 1..1024, not '0' (--threads)"), std::string::npos)
      << file.message();
  // A range that applies only with its tier on: an SSD segment is checked once ssd.dir is set.
  EXPECT_TRUE(ApplyTomlString("[ssd]\nsegment = 100\n", "off.toml", config).ok());
  EXPECT_FALSE(ApplyTomlString("[ssd]\ndir = \"d\"\nsegment = 100\n", "on.toml", config).ok());
  // A client's longest reservation cannot be shorter than the default one.
  DaemonConfig reservations;
  EXPECT_FALSE(ApplyTomlString("[server]\nreservation_timeout_ms = 5000\nmax_reservation_timeout_ms = 3000\n",
                               "short.toml", reservations)
                   .ok());
  DaemonConfig equal;
  EXPECT_TRUE(ApplyTomlString("[server]\nreservation_timeout_ms = 3000\nmax_reservation_timeout_ms = 3000\n",
                              "equal.toml", equal)
                  .ok());
  EXPECT_EQ(equal.max_reservation_timeout_ms, 3000u);
}

// Found by fuzz/daemon_config_fuzz: a file's list item with a comma read back as two items from the
// flag form. The file refuses it now, and changes nothing.
TEST(DaemonSettingsTest, AListItemWithACommaOrEmptyIsRefusedInTheFile) {
  DaemonConfig config;
  const Status comma = ApplyTomlString("[cluster]\npeers = [\"a:1\", \"b,c:2\"]\n", "list.toml", config);
  EXPECT_EQ(comma.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(comma.message().find("cluster.peers"), std::string::npos) << comma.message();
  EXPECT_TRUE(config.peers.empty());
  EXPECT_FALSE(ApplyTomlString("[cluster]\npeers = [\"a:1\", \"\"]\n", "list.toml", config).ok());
  ASSERT_TRUE(ApplyTomlString("[cluster]\npeers = [\"a:1\", \"b:2\"]\n", "list.toml", config).ok());
  EXPECT_EQ(config.peers, (std::vector<std::string>{"a:1", "b:2"}));
}

TEST(DaemonSettingsTest, HelpShowsRangeDefaultUnitAndFileKey) {
  const DaemonConfig defaults;
  std::map<std::string, std::string> help;
  for (const Setting& s : DaemonSettings()) help[s.name()] = settings::HelpLine(s, defaults);
  EXPECT_EQ(help["server.threads"], "most gRPC handler threads; requests beyond wait; 1..1024 [64] (server.threads)");
  EXPECT_NE(help["server.reservation_timeout_ms"].find("[30000 ms]"), std::string::npos);
  EXPECT_NE(help["dram.capacity"].find("[1GiB]"), std::string::npos);
  EXPECT_NE(help["dram.eviction_policy"].find("prefix-arc, prefix or lru [prefix-arc]"), std::string::npos);
  EXPECT_NE(help["ucx.enabled"].find("(ucx.enabled = false; default true)"), std::string::npos);
}

// The shipped files load and make a valid daemon.
TEST(DaemonSettingsTest, DeployFilesLoad) {
  // From CMake: __FILE__ is relative to the build directory under ccache's base dir.
  const std::filesystem::path deploy = std::filesystem::path(KVSTASH_SOURCE_DIR) / "deploy";
  for (const char* name : {"kvstashd.toml", "kvstashd-cluster.toml"}) {
    DaemonConfig config;
    const Status st = ApplyTomlFile((deploy / name).string(), config);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(config.Validate().ok()) << name << ": " << config.Validate().ToString();
  }
}

}  // namespace
}  // namespace kvstash::server
