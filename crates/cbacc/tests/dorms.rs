//! The DORMS client against the real lab DORMS server (HTTPS on 127.0.0.1 with a generated CA)
//! and the lab DNS server (SRV and A records): discovery, every path layout, and every failure
//! (404, 500, timeout, malformed JSON, huge body, wrong content type, TLS with the wrong CA,
//! a dead server) ending as a flow without metadata and a clear log line, never a crash.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbacc::cache::{CacheConfig, FetchResult, MetadataCache, Origin};
use cbacc::dorms::{ClientConfig, DormsClient, log_fetch};
use cbacc::metadata::{LegacyUnit, RateLeaf};
use cbacc::{Rate, SourceGroup};
use mcast_driad::DnsConfig;
use mcast_labdns::LabDns;
use mcast_labdorms::{LabCa, LabDorms, Options};

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sg(s: &str) -> SourceGroup {
    s.parse().unwrap()
}

/// The lab in miniature: a CA, the DORMS server, DNS with the SRV records pointing at it.
struct Lab {
    dir: tempfile::TempDir,
    ca: LabCa,
    dorms: LabDorms,
    dns: LabDns,
}

const FLOWS: &str = r#"
[[flows]]
source = "198.51.100.10"
group = "232.1.1.1"
max_speed = 4000
priority = 300

[[flows]]
source = "198.51.100.10"
group = "232.1.1.2"
legacy_bits_per_second = 6000000
layouts = ["legacy"]
strings = true

[[flows]]
source = "198.51.100.10"
group = "232.1.1.3"
max_speed = 1
fault = "server-error"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.4"
max_speed = 1
fault = "slow"
delay = "3s"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.5"
max_speed = 1
fault = "malformed"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.6"
max_speed = 1
fault = "huge"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.7"
max_speed = 1
fault = "wrong-content-type"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.8"
max_speed = 1
fault = "no-cbacc"

[[flows]]
source = "198.51.100.10"
group = "232.1.1.9"
max_speed = 1
fault = "not-found"

[[flows]]
source = "2001:db8::a"
group = "ff3e::8000:1"
max_speed = 2500

[[flows]]
source = "198.51.100.11"
group = "232.1.1.1"
max_speed = 3000
"#;

impl Lab {
    async fn start(flows: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let ca = LabCa::generate().unwrap();
        let identity = ca.issue(&["dorms.example.net".to_owned()]).unwrap();
        let flows_file = dir.path().join("flows.toml");
        write(&flows_file, flows);
        let dorms = LabDorms::start(Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            flows_file,
            tls: identity.server_config().unwrap(),
            watch_interval: Duration::from_millis(50),
        })
        .await
        .unwrap();
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        let port = dorms.local_addr().port();
        // A closed port for "the server is down": bind, note, drop.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        write(
            &zones.join("100.51.198.in-addr.arpa.zone"),
            &format!(
                "$ORIGIN 100.51.198.in-addr.arpa.\n$TTL 30\n@ IN SOA ns.example.net. h.example.net. ( 1 3600 600 86400 5 )\n  IN NS ns.example.net.\n\
                 _dorms._tcp.10 IN SRV 0 0 {port} dorms.example.net.\n\
                 ; .11: the first server is down, the second (lower priority) answers\n\
                 _dorms._tcp.11 IN SRV 0 0 {dead} dorms.example.net.\n\
                 _dorms._tcp.11 IN SRV 5 0 {port} dorms.example.net.\n\
                 ; .12: only a dead server\n\
                 _dorms._tcp.12 IN SRV 0 0 {dead} dorms.example.net.\n\
                 ; .13: \".\": no DORMS service\n\
                 _dorms._tcp.13 IN SRV 0 0 0 .\n\
                 14 IN PTR src14.example.net.\n\
                 _dorms._tcp.15 IN TXT \"not an SRV record\"\n"
            ),
        );
        write(
            &zones.join("example.net.zone"),
            "$ORIGIN example.net.\n$TTL 30\n@ IN SOA ns h ( 1 3600 600 86400 5 )\n  IN NS ns\nns IN A 127.0.0.1\ndorms IN A 127.0.0.1\n",
        );
        write(
            &zones.join("8.b.d.0.1.0.0.2.ip6.arpa.zone"),
            &format!(
                "$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.\n$TTL 30\n@ IN SOA ns.example.net. h.example.net. ( 1 3600 600 86400 5 )\n  IN NS ns.example.net.\n\
                 _dorms._tcp.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN SRV 0 0 {port} dorms.example.net.\n"
            ),
        );
        let dns = LabDns::start(mcast_labdns::Options::dir("127.0.0.1:0".parse().unwrap(), &zones)).await.unwrap();
        Lab { dir, ca, dorms, dns }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            dns: DnsConfig {
                nameservers: Some(vec![self.dns.local_addr()]),
                timeout: Duration::from_secs(1),
                attempts: 0,
                rate_limit: None,
            },
            http_dns: true,
            ca_pem: vec![self.ca.cert_pem().as_bytes().to_vec()],
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(700),
            ..ClientConfig::default()
        }
    }

    fn client(&self) -> DormsClient {
        DormsClient::new(self.config()).unwrap()
    }
}

fn found(result: &FetchResult) -> (u64, u16, RateLeaf, &str) {
    match result {
        FetchResult::Found { metadata, url, .. } => (metadata.rate.bps(), metadata.priority, metadata.leaf, url),
        other => panic!("expected metadata, got {other:?}"),
    }
}

fn failed(result: &FetchResult) -> &str {
    match result {
        FetchResult::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn not_found(result: &FetchResult) -> &str {
    match result {
        FetchResult::NotFound { reason } => reason,
        other => panic!("expected no metadata, got {other:?}"),
    }
}

/// Captures log lines of the current thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || me.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn discovers_and_reads_the_current_layout_then_uses_the_caches() {
    let lab = Lab::start(FLOWS).await;
    let client = lab.client();
    let fetch = client.fetch(sg("198.51.100.10,232.1.1.1")).await;
    let (bps, priority, leaf, url) = found(&fetch.result);
    assert_eq!((bps, priority, leaf), (4_000_000, 300, RateLeaf::MaxSpeed));
    let port = lab.dorms.local_addr().port();
    assert_eq!(
        url,
        format!(
            "https://dorms.example.net:{port}/restconf/data/ietf-dorms:dorms/metadata/sender=198.51.100.10/group=232.1.1.1"
        )
    );
    assert!(fetch.trace[0].starts_with("SRV _dorms._tcp.10.100.51.198.in-addr.arpa.: 0 0"), "{:?}", fetch.trace);
    // Again: SRV and RESTCONF root come from the caches; one request only.
    let before = lab.dorms.requests().len();
    let again = client.fetch(sg("198.51.100.10,232.1.1.1")).await;
    found(&again.result);
    assert!(again.trace[0].contains("cached"), "{:?}", again.trace);
    assert!(again.trace[1].contains("(cached)"), "{:?}", again.trace);
    assert_eq!(lab.dorms.requests().len(), before + 1);
    let paths: Vec<String> = lab.dorms.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.iter().filter(|p| p.starts_with("/.well-known/host-meta")).count(), 1, "{paths:?}");
}

#[tokio::test]
async fn reads_the_legacy_layout_with_its_configurable_unit() {
    let lab = Lab::start(FLOWS).await;
    let fetch = lab.client().fetch(sg("198.51.100.10,232.1.1.2")).await;
    let (bps, priority, leaf, url) = found(&fetch.result);
    assert_eq!((bps, priority, leaf), (6_000_000, 256, RateLeaf::MaxBitsPerSecond));
    assert!(url.ends_with("/restconf/data/ietf-dorms:metadata/sender=198.51.100.10/group=232.1.1.2/ietf-cbacc:cbacc"));
    assert!(fetch.trace.iter().any(|t| t.contains("ietf-dorms:dorms/metadata") && t.ends_with("HTTP 404")));
    let kbit = DormsClient::new(ClientConfig { legacy_unit: LegacyUnit::Kbit, ..lab.config() }).unwrap();
    assert_eq!(found(&kbit.fetch(sg("198.51.100.10,232.1.1.2")).await.result).0, 6_000_000_000);
}

#[tokio::test]
async fn json_host_meta_and_another_root() {
    let flows = format!("host_meta = \"json\"\nrestconf_root = \"/top/restconf\"\n{FLOWS}");
    let lab = Lab::start(&flows).await;
    let fetch = lab.client().fetch(sg("198.51.100.10,232.1.1.1")).await;
    assert!(found(&fetch.result).3.contains("/top/restconf/data/"), "{:?}", fetch.trace);
    assert!(fetch.trace.iter().any(|t| t.contains(".well-known/host-meta: HTTP 404")), "{:?}", fetch.trace);
}

#[tokio::test]
async fn ipv6_keys_are_percent_encoded() {
    let lab = Lab::start(FLOWS).await;
    let fetch = lab.client().fetch(sg("2001:db8::a,ff3e::8000:1")).await;
    assert_eq!(found(&fetch.result).0, 2_500_000);
    assert!(
        lab.dorms.requests().iter().any(|r| r.path.contains("sender=2001%3Adb8%3A%3Aa/group=ff3e%3A%3A8000%3A1")),
        "{:?}",
        lab.dorms.requests()
    );
}

#[tokio::test]
async fn falls_through_to_the_next_server_and_reports_dead_ones() {
    let lab = Lab::start(FLOWS).await;
    let client = lab.client();
    let fetch = client.fetch(sg("198.51.100.11,232.1.1.1")).await;
    assert_eq!(found(&fetch.result).0, 3_000_000, "{:?}", fetch.trace);
    assert!(fetch.trace.iter().any(|t| t.contains("onnect")), "{:?}", fetch.trace);
    let fetch = client.fetch(sg("198.51.100.12,232.1.1.1")).await;
    let error = failed(&fetch.result);
    assert!(error.contains("dorms.example.net:") && error.contains("onnect"), "{error}");
    // A dead server is transient trouble, not a reason to ignore it for an hour.
    assert!(client.ignored().is_empty());
}

#[tokio::test]
async fn no_server_no_record_and_no_flow_are_answers_not_failures() {
    let lab = Lab::start(FLOWS).await;
    let client = lab.client();
    let r = client.fetch(sg("198.51.100.14,232.1.1.1")).await.result;
    assert!(not_found(&r).contains("no DORMS server for 198.51.100.14 (NXDOMAIN at _dorms._tcp.14.100"), "{r:?}");
    let r = client.fetch(sg("198.51.100.15,232.1.1.1")).await.result;
    assert!(not_found(&r).contains("(NODATA at"), "{r:?}");
    let r = client.fetch(sg("198.51.100.13,232.1.1.1")).await.result;
    assert!(not_found(&r).contains("SRV target \".\""), "{r:?}");
    let r = client.fetch(sg("198.51.100.10,232.9.9.9")).await.result;
    assert!(not_found(&r).contains("HTTP 404 for 198.51.100.10,232.9.9.9 at every path layout"), "{r:?}");
    let r = client.fetch(sg("198.51.100.10,232.1.1.9")).await.result;
    assert!(not_found(&r).contains("HTTP 404"), "{r:?}");
    let r = client.fetch(sg("198.51.100.10,232.1.1.8")).await.result;
    assert!(not_found(&r).contains("no CBACC data"), "{r:?}");
}

/// Every failure: the flow ends up without metadata (blocked, or `--default`), with one
/// WARN line naming the flow and the cause; the process goes on.
#[tokio::test]
async fn each_failure_leaves_the_flow_unknown_with_a_clear_log_line() {
    let lab = Lab::start(FLOWS).await;
    let client = lab.client();
    let logs = Logs::default();
    let _guard = logs.install();
    let cases = [
        ("232.1.1.3", "HTTP 500"),
        ("232.1.1.4", "timed out"),
        ("232.1.1.5", "malformed JSON"),
        ("232.1.1.6", "larger than 64 KiB"),
        ("232.1.1.7", "wrong content type \"text/html; charset=utf-8\""),
    ];
    let t0 = Instant::now();
    for (group, want) in cases {
        let flow = sg(&format!("198.51.100.10,{group}"));
        let fetch = client.fetch(flow).await;
        let error = failed(&fetch.result).to_owned();
        assert!(error.contains(want), "{group}: {error}");
        log_fetch(flow, &fetch);
        let text = logs.text();
        let line = text.lines().find(|l| l.contains(&flow.to_string())).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("WARN") && line.contains("DORMS lookup failed") && line.contains(want), "{line}");
        logs.0.lock().unwrap().clear();

        for (default, origin) in [(None, Origin::Unknown), (Some(Rate::from_bps(1000)), Origin::Default)] {
            let mut cache = MetadataCache::new(CacheConfig { default_rate: default, ..CacheConfig::default() }, 1);
            cache.set_wanted(&[flow].into(), t0);
            cache.poll_fetch(t0);
            cache.on_result(flow, fetch.result.clone(), t0);
            let info = cache.info(&flow, t0);
            assert_eq!((info.rate, &info.origin), (default, &origin));
            assert_eq!(info.last_problem.as_deref(), Some(error.as_str()));
        }
    }
    // The client still works for the good flows.
    assert_eq!(found(&client.fetch(sg("198.51.100.10,232.1.1.1")).await.result).0, 4_000_000);
}

#[tokio::test]
async fn a_slow_server_does_not_stall_lookups_of_other_flows() {
    let lab = Lab::start(FLOWS).await;
    // The slow flow answers after 3 s; allow 2.5 s per request.
    let config = ClientConfig { timeout: Duration::from_millis(2500), ..lab.config() };
    let client = Arc::new(DormsClient::new(config).unwrap());
    // Warm the discovery caches so both lookups go straight to the metadata GET.
    found(&client.fetch(sg("198.51.100.10,232.1.1.1")).await.result);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.fetch(sg("198.51.100.10,232.1.1.4")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    found(&client.fetch(sg("198.51.100.10,232.1.1.1")).await.result);
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    let slow = slow.await.unwrap();
    assert!(failed(&slow.result).contains("timed out"));
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_and_puts_the_server_on_the_ignore_list() {
    let lab = Lab::start(FLOWS).await;
    let other = LabCa::generate().unwrap();
    let client = DormsClient::new(ClientConfig {
        ca_pem: vec![other.cert_pem().as_bytes().to_vec()],
        ignore_time: Duration::from_secs(3600),
        ..lab.config()
    })
    .unwrap();
    let logs = Logs::default();
    let _guard = logs.install();
    let flow = sg("198.51.100.10,232.1.1.1");
    let fetch = client.fetch(flow).await;
    let error = failed(&fetch.result);
    assert!(error.contains("TLS") && error.contains("certificate"), "{error}");
    log_fetch(flow, &fetch);
    let text = logs.text();
    assert!(text.contains("DORMS server unusable: on the ignore list"), "{text}");
    assert!(text.contains("WARN") && text.contains("DORMS lookup failed") && text.contains("TLS"), "{text}");
    let ignored = client.ignored();
    assert_eq!(ignored.len(), 1);
    assert!(ignored[0].1 > Duration::from_secs(3590));
    // Next time the server is skipped without a connection.
    let before = lab.dorms.requests().len();
    let again = client.fetch(flow).await;
    assert!(failed(&again.result).contains("ignored"), "{:?}", again.result);
    assert!(again.trace.iter().any(|t| t.contains("on the ignore list for")), "{:?}", again.trace);
    assert_eq!(lab.dorms.requests().len(), before);
    // Without --ca-file (system roots only) the lab CA is not trusted either.
    let system_only = DormsClient::new(ClientConfig { ca_pem: Vec::new(), ..lab.config() }).unwrap();
    assert!(failed(&system_only.fetch(flow).await.result).contains("TLS"));
}

#[tokio::test]
async fn a_rewritten_flows_file_changes_the_rate() {
    let lab = Lab::start(FLOWS).await;
    let client = lab.client();
    let flow = sg("198.51.100.10,232.1.1.1");
    assert_eq!(found(&client.fetch(flow).await.result).0, 4_000_000);
    write(&lab.dir.path().join("flows.toml"), &FLOWS.replacen("max_speed = 4000", "max_speed = 9000", 1));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if found(&client.fetch(flow).await.result).0 == 9_000_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the new rate was not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_ca_files_are_refused_at_start() {
    let lab = Lab::start(FLOWS).await;
    let e = DormsClient::new(ClientConfig { ca_pem: vec![b"not a certificate".to_vec()], ..lab.config() }).unwrap_err();
    assert!(e.to_string().contains("CA certificates"), "{e}");
    let _: SocketAddr = lab.dns.local_addr();
}
