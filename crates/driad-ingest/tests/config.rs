//! driad-ingest's real command line with a configuration file: accepted (`--check-config`),
//! unknown keys and bad values rejected with exit status 2; packaging subcommands.

use mcast_daemon::testing::{assert_accepted, assert_packaging, assert_rejected};

const BIN: &str = env!("CARGO_BIN_EXE_driad-ingest");

const GOOD: &str = r#"
joinfile = "/run/ingest/cbacc.sgs"
native-interface = "amt0"
nameserver = ["203.0.113.53", "[2001:db8::53]:5353"]
hold_down = "3m"
local = ["192.0.2.2:40000"]
metrics-listen = "[::1]:9103"
"#;

#[test]
fn accepts_a_config_file() {
    assert_accepted(BIN, GOOD, &[]);
}

#[test]
fn rejects_unknown_keys_and_bad_values_with_status_2() {
    let rejected = |text: &str, extra: &[&str], why: &str| assert_rejected(BIN, text, extra, why);
    rejected(
        &format!("{GOOD}name-server = [\"192.0.2.53\"]\n"),
        &[],
        ":8: unknown key `name-server` (driad-ingest has no option --name-server)",
    );
    rejected(&GOOD.replace("203.0.113.53", "dns.example"), &[], "ADDR[:PORT]");
    rejected(&format!("{GOOD}joinfile = \"again\"\n"), &[], "config.toml");
    rejected(GOOD, &["--local", "192.0.2.2", "--local", "192.0.2.3"], "at most one IPv4");
    rejected(&GOOD.replace("9103", "x"), &[], "--metrics-listen");
}

#[test]
fn completions_and_man_page() {
    assert_packaging(BIN, "driad-ingest", &["native-interface", "nameserver"]);
}
