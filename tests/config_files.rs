//! Configuration files: every example validates without an error, under
//! each of its profiles, and each broken file gives exactly the messages
//! in its `.expected` sibling (one diagnostic a line, as `tollgate check`
//! prints it). `BLESS=1 cargo test --all-features --test config_files`
//! rewrites the `.expected` files after a deliberate change of wording.
//!
//! The messages about features this build lacks differ between builds, so
//! the golden files are checked with every feature on (as CI runs).
#![cfg(feature = "config")]

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tollgate::config::{Config, Format, LoadError, Loader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join(dir);
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    found.sort();
    found
}

/// What `tollgate check` prints for a file, diagnostics only, without the
/// environment.
fn check(path: &Path, profile: Option<&str>) -> Vec<String> {
    let loader = Loader::new().no_env();
    let loader = match profile {
        Some(p) => loader.profile(p),
        None => loader,
    };
    match loader.load_path(path) {
        Ok(config) => config.validate().iter().map(|d| format!("{d:#}")).collect(),
        Err(LoadError::Invalid { diagnostics }) => {
            diagnostics.iter().map(|d| format!("{d:#}")).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn every_example_file_validates_without_an_error_in_every_profile() {
    let examples = files("examples/config", &["toml", "yaml", "yml"]);
    assert!(examples.len() >= 3, "{examples:?}");
    for path in examples {
        let config = Loader::new()
            .no_env()
            .load_path(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut profiles: Vec<Option<String>> = vec![None];
        profiles.extend(config.profiles().iter().cloned().map(Some));
        for profile in profiles {
            let found = check(&path, profile.as_deref());
            let errors: Vec<&String> = found.iter().filter(|l| l.starts_with("error")).collect();
            assert!(
                errors.is_empty(),
                "{} (profile {profile:?}):\n{}",
                path.display(),
                found.join("\n")
            );
        }
    }
}

#[test]
fn the_redis_example_has_a_development_and_a_production_profile() {
    let path = Path::new(ROOT).join("examples/config/redis_failover.yaml");
    let dev = Config::from_path(&path, Some("development")).unwrap_or_else(|e| panic!("{e}"));
    let backend = dev.file().backend.as_ref();
    assert_eq!(backend.and_then(|b| b.kind.as_deref()), Some("memory"));
    assert!(backend.is_some_and(|b| b.failover.is_none() && b.redis.is_none()));
    let prod = Config::from_path(&path, Some("production")).unwrap_or_else(|e| panic!("{e}"));
    let redis = prod
        .file()
        .backend
        .as_ref()
        .and_then(|b| b.redis.as_ref())
        .unwrap_or_else(|| panic!("no redis"));
    assert_eq!(redis.url, None, "the profile removed the URL");
    assert_eq!(redis.sentinel.as_ref().map(|s| s.nodes.len()), Some(3));
    assert_eq!(
        redis.prefix.as_deref(),
        Some("myapp:rl:"),
        "kept from the file"
    );
}

#[cfg(all(
    feature = "redis-tls",
    feature = "redis-sentinel",
    feature = "jwt",
    feature = "schedule",
    feature = "metrics"
))]
#[test]
fn each_broken_file_gives_exactly_the_expected_messages() {
    let bless = std::env::var_os("BLESS").is_some();
    let broken = files("tests/fixtures/config/broken", &["toml", "yaml", "yml"]);
    assert!(broken.len() >= 10, "{broken:?}");
    let mut wrong = Vec::new();
    for path in broken {
        let found = check(&path, None);
        assert!(
            found.iter().any(|l| l.starts_with("error")),
            "{} is meant to be broken:\n{}",
            path.display(),
            found.join("\n")
        );
        let expected_path = path.with_extension(format!(
            "{}.expected",
            path.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        let got = found.join("\n") + "\n";
        if bless {
            fs::write(&expected_path, &got).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        let want = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != want {
            wrong.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_profile_and_the_environment_override_the_file_in_that_order() {
    let text = "[default]\nquota = \"1/s\"\nname = \"base\"\n\
                [profiles.prod.default]\nquota = \"2/s\"\nname = \"prod\"\n";
    let config = Loader::new()
        .env([
            ("TOLLGATE_PROFILE", "prod"),
            ("TOLLGATE_DEFAULT__QUOTA", "3/s"),
        ])
        .load_str(text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    let default = config.file().default.as_ref();
    assert_eq!(default.and_then(|d| d.quota.as_deref()), Some("3/s"));
    assert_eq!(default.and_then(|d| d.name.as_deref()), Some("prod"));
    let explicit = Loader::new()
        .env([("TOLLGATE_PROFILE", "nope")])
        .profile("prod")
        .load_str(text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(explicit.profile(), Some("prod"), "the argument wins");
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let err = Loader::new()
        .env([
            ("TOLLGATE_DEFAULT__QUOTA", "10/x"),
            ("TOLLGATE_SHADOW", "maybe"),
        ])
        .load_str("[default]\nquota = \"1/s\"\nshadow = false\n", Format::Toml)
        .map(|c| c.validate())
        .unwrap_or_else(|e| e.diagnostics().to_vec());
    let lines: Vec<String> = err.iter().map(|d| format!("{d:#}")).collect();
    assert_eq!(
        lines,
        [
            "error: shadow: expected true or false, found string \"maybe\" (set by environment TOLLGATE_SHADOW); write true or false, without quotes",
            "error: default.quota: \"10/x\": unknown unit \"x\" (set by environment TOLLGATE_DEFAULT__QUOTA); use s, m, h, d or a period such as 10s (ms for milliseconds)",
        ]
    );
}

#[test]
fn an_unknown_profile_is_an_error_with_the_names_that_exist() {
    let text = "[default]\nquota = \"1/s\"\n[profiles.production]\nshadow = true\n";
    let err = Loader::new()
        .no_env()
        .profile("prod")
        .load_str(text, Format::Toml)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("profiles: no profile named \"prod\" (chosen by --profile); did you mean \"production\"?"),
        "{err}"
    );
}

#[test]
fn yaml_and_toml_read_the_same() {
    let toml = "[default]\nquota = \"10/s\"\n[[routes]]\npattern = \"/a\"\nquota = \"1/s\"\ncount_only = { status = [401, \"5xx\"] }\n";
    let yaml = "default:\n  quota: 10/s\nroutes:\n  - pattern: /a\n    quota: 1/s\n    count_only:\n      status: [401, 5xx]\n";
    let a = Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}"));
    let b = Config::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.file(), b.file());
}

const SEEDS: &[&str] = &[
    include_str!("../examples/config/policies.toml"),
    include_str!("../examples/config/redis_failover.yaml"),
    include_str!("fixtures/config/broken/keys.toml"),
    include_str!("fixtures/config/broken/types.yaml"),
];

fn load_anything(text: &str) {
    for format in [Format::Toml, Format::Yaml] {
        match Loader::new().no_env().load_str(text, format) {
            Ok(config) => {
                let _ = config.validate();
                let _ = config.sources();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes never panic either reader.
    #[test]
    fn random_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_anything(&String::from_utf8_lossy(&bytes));
    }

    /// Nor do real files with bytes changed, cut or repeated: those reach
    /// validation, not only the parsers.
    #[test]
    fn mangled_files_never_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SEEDS[seed].as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        load_anything(&text);
        let keep = cut.index(text.chars().count() + 1);
        load_anything(&text.chars().take(keep).collect::<String>());
    }
}

#[test]
fn a_yaml_alias_bomb_is_an_error_not_an_exhausted_machine() {
    let mut text = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for level in 0..9u8 {
        let prev = (b'a' + level) as char;
        let next = (b'a' + level + 1) as char;
        text.push_str(&format!(
            "{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let err = Config::from_yaml_str(&text).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("YAML")), "{text}");
}

#[test]
fn deeply_nested_input_is_an_error() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert!(Config::from_yaml_str(&format!("a: {deep}")).is_err());
    assert!(Config::from_toml_str(&format!("a = {deep}")).is_err());
}

#[test]
fn deeply_nested_keys_are_read_or_refused_without_overflowing() {
    for depth in [20usize, 60, 200] {
        let open = "{ kind = \"header\", name = \"x\", fallback = ".repeat(depth);
        let toml = format!(
            "[default]\nquota = \"1/s\"\nkey = {open}{{ kind = \"global\" }}{}\n",
            " }".repeat(depth)
        );
        if let Ok(config) = Config::from_toml_str(&toml) {
            let _ = config.validate();
        }
        let open = "{kind: header, name: x, fallback: ".repeat(depth);
        let yaml = format!(
            "default:\n  quota: 1/s\n  key: {open}{{kind: global}}{}\n",
            "}".repeat(depth)
        );
        if let Ok(config) = Config::from_yaml_str(&yaml) {
            let _ = config.validate();
        }
    }
}

/// The policies example, turned into builder calls the way
/// `src/config/mod.rs` lays out (a sketch of `from_config` for the parts
/// this file uses): every value it holds is one the builder takes.
#[test]
fn the_policies_example_builds_a_layer_with_the_builder() {
    use tollgate::config::schema::{CostSpec, RuleSpec, StatusSpec};
    use tollgate::key::{ClientIp, ClientIpHeader};
    use tollgate::policy::{Rule, Tiers};
    use tollgate::settings::AccessList;
    use tollgate::{Quota, RateLimitLayer};

    fn quota(text: &Option<String>) -> Quota {
        text.as_deref()
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }
    fn rule(spec: &RuleSpec, fallback_name: &str) -> Rule {
        let mut rule = Rule::new(
            spec.name
                .clone()
                .unwrap_or_else(|| fallback_name.to_owned()),
            quota(&spec.quota),
        );
        if let Some(CostSpec::Fixed(n)) = spec.cost {
            rule = rule.cost(n);
        }
        if let Some(shadow) = spec.shadow {
            rule = rule.shadow(shadow);
        }
        if spec.algorithm.as_deref() == Some("sliding_window") {
            rule = rule.algorithm(tollgate::Algorithm::SlidingWindow);
        }
        if let Some(tiers) = &spec.tiers {
            let header = tiers.from_header.clone().unwrap_or_default();
            let mut t = Tiers::from_fn(move |parts: &http::request::Parts| {
                parts
                    .headers
                    .get(header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
            for (tier, q) in &tiers.quotas {
                t = if q == "unlimited" {
                    t.unlimited(tier.as_str())
                } else {
                    t.tier(tier.as_str(), quota(&Some(q.clone())))
                };
            }
            rule = rule.tiers(t);
        }
        if let Some(count) = &spec.count_only {
            let codes: Vec<u16> = count
                .status
                .iter()
                .filter_map(|s| match s {
                    StatusSpec::Code(c) => u16::try_from(*c).ok(),
                    _ => None,
                })
                .collect();
            rule = rule.count_only(move |res| codes.contains(&res.status.as_u16()));
        }
        rule
    }

    let config = Config::from_path(Path::new(ROOT).join("examples/config/policies.toml"), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let file = config.file();
    let key = file.key.as_ref().unwrap_or_else(|| panic!("a key"));
    let ranges = key
        .trusted_proxies
        .iter()
        .map(|r| r.parse().unwrap_or_else(|e| panic!("{e}")));
    let mut client_ip = ClientIp::trusting(ranges);
    if key.trust_loopback == Some(true) {
        client_ip = client_ip.trust_loopback();
    }
    assert_eq!(key.header.as_deref(), Some("x-forwarded-for"));
    client_ip = client_ip.header(ClientIpHeader::XForwardedFor);
    let access = file
        .access
        .as_ref()
        .unwrap_or_else(|| panic!("access lists"));
    let nets = |list: &[String]| -> Vec<ipnet::IpNet> {
        list.iter()
            .map(|s| {
                s.parse()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    };
    let mut builder = RateLimitLayer::builder().key(client_ip.clone()).access(
        AccessList::new()
            .client_ip(client_ip)
            .allowing(nets(&access.allow))
            .denying(nets(&access.deny)),
    );
    if let Some(default) = &file.default {
        builder = builder.policy(rule(default, "default"));
    }
    for group in &file.groups {
        let pattern = group.pattern.clone().unwrap_or_default();
        builder = builder.group(&pattern, rule(&group.rule(), &pattern));
    }
    for route in &file.routes {
        let pattern = route.pattern.clone().unwrap_or_default();
        builder = builder.route(&pattern, rule(&route.rule(), &pattern));
    }
    for pattern in &file.exempt {
        builder = builder.exempt(pattern);
    }
    let layer = builder.build();
    assert!(layer.is_ok(), "{layer:?}");
}
