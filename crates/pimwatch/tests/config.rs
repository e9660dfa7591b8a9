//! pimwatch's real command line with a configuration file: accepted (`--check-config`),
//! unknown keys and bad values rejected with exit status 2, and the packaging subcommands.

use mcast_daemon::testing::{assert_accepted, assert_packaging, assert_rejected, run};

const BIN: &str = env!("CARGO_BIN_EXE_pimwatch");

const GOOD: &str = r#"
interface = ["down0", "down1"]
native-interface = "amt0"
joinfile = "/run/ingest/pimwatch.sgs"
ssm-range = ["232.0.0.0/7"]
hello_period = "10s"
metrics-listen = "127.0.0.1:9101"
log-level = "info,mcast_pim=debug"
"#;

#[test]
fn accepts_a_config_file() {
    assert_accepted(BIN, GOOD, &[]);
}

#[test]
fn rejects_unknown_keys_and_bad_values_with_status_2() {
    let rejected = |text: &str, extra: &[&str], why: &str| assert_rejected(BIN, text, extra, why);
    rejected(
        &format!("{GOOD}helo-period = \"5s\"\n"),
        &[],
        ":9: unknown key `helo-period` (pimwatch has no option --helo-period)",
    );
    rejected(&GOOD.replace("10s", "ten seconds"), &[], "--hello-period");
    rejected(&GOOD.replace("\"amt0\"", "\"down0\""), &[], "down0 cannot be both a downstream and the native interface");
    rejected(GOOD, &["--log-level", "info,=[["], "--log-level");
    let out = run(BIN, &["--config", "/nonexistent/pimwatch.toml"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot read /nonexistent/pimwatch.toml"), "{}", out.stderr);
}

#[test]
fn the_command_line_wins_over_the_file() {
    assert_accepted(BIN, &GOOD.replace("\"amt0\"", "\"down0\""), &["--native-interface", "amt9"]);
}

#[test]
fn completions_and_man_page() {
    assert_packaging(BIN, "pimwatch", &["native-interface", "ssm-range"]);
}
