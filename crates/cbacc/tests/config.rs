//! cbacc's real command line with a configuration file: accepted (`--check-config`), unknown
//! keys, bad rates and unusable CA files rejected with exit status 2; packaging subcommands.

use mcast_daemon::testing::{assert_accepted, assert_packaging, assert_rejected};

const BIN: &str = env!("CARGO_BIN_EXE_cbacc");

const GOOD: &str = r#"
input-file = "/run/ingest/pimwatch.sgs"
output_file = "/run/ingest/cbacc.sgs"
bandwidth = "50Mbit/s"
default = "2Mibit/s"
hold-down = "150s"
nameserver = ["127.0.0.1:5353"]
metrics-listen = "127.0.0.1:9102"
"#;

#[test]
fn accepts_a_config_file() {
    assert_accepted(BIN, GOOD, &[]);
}

#[test]
fn rejects_unknown_keys_bad_values_and_ca_files_with_status_2() {
    let rejected = |text: &str, why: &str| assert_rejected(BIN, text, &[], why);
    rejected(&format!("{GOOD}bandwith = \"1Gbit/s\"\n"), ":9: unknown key `bandwith` (cbacc has no option --bandwith)");
    rejected(&GOOD.replace("50Mbit/s", "50"), "has no unit");
    rejected(&format!("{GOOD}ca-file = [\"{{dir}}/missing.pem\"]\n"), "reading --ca-file");
    rejected(&format!("{GOOD}ca-file = [\"{{dir}}/config.toml\"]\n"), "CA certificates");
    rejected(&GOOD.replace("cbacc.sgs", "pimwatch.sgs"), "the same file");
}

#[test]
fn the_command_line_wins_over_the_file() {
    assert_accepted(BIN, &GOOD.replace("50Mbit/s", "50"), &["-b", "10Mibit/s"]);
}

#[test]
fn completions_and_man_page() {
    assert_packaging(BIN, "cbacc", &["bandwidth", "hold-down"]);
}
