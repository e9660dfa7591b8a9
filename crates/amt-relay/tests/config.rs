//! amt-relay's real command line with a configuration file: accepted (`--check-config`),
//! unknown keys and bad values rejected with exit status 2; packaging subcommands.

use mcast_daemon::testing::{assert_accepted, assert_packaging, assert_rejected};

const BIN: &str = env!("CARGO_BIN_EXE_amt-relay");

const GOOD: &str = r#"
relay-address = ["203.0.113.15", "2001:db8::15"]
discovery-address = ["192.52.193.1"]
advertise = ["192.52.193.1=203.0.113.15"]
upstream_interface = "src0"
capacity = 50
query-interval = "30s"
no-gso = false
metrics-listen = "127.0.0.1:9104"
"#;

#[test]
fn accepts_a_config_file() {
    assert_accepted(BIN, GOOD, &[]);
}

#[test]
fn rejects_unknown_keys_and_bad_values_with_status_2() {
    let rejected = |text: &str, why: &str| assert_rejected(BIN, text, &[], why);
    rejected(&format!("{GOOD}capacty = 10\n"), ":10: unknown key `capacty` (amt-relay has no option --capacty)");
    rejected(&GOOD.replace("capacity = 50", "capacity = 0"), "invalid configuration");
    rejected(&GOOD.replace("=203.0.113.15", "=198.51.100.1"), "not a relay address");
    rejected(&GOOD.replace("\"src0\"", "[\"src0\"]"), "expects a single value");
}

#[test]
fn completions_and_man_page() {
    assert_packaging(BIN, "amt-relay", &["relay-address", "query-interval"]);
}
