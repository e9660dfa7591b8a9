//! `driad-ingest lookup` (what DNS says about a source's relays, replacing the original's
//! driad.py) and `driad-ingest zone-record` (the record to publish, replacing mkdriad.py).

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::{Context, bail};
use mcast_driad::{Answer, Discovery, DnsConfig, RelayOrder, reverse_name};
use mcast_wire::amtrelay::{AmtRelay, DomainName, Relay};

use crate::cli::{LookupArgs, ZoneRecordArgs};

pub async fn lookup(args: LookupArgs) -> anyhow::Result<()> {
    let dns = DnsConfig {
        nameservers: (!args.nameservers.is_empty()).then(|| args.nameservers.clone()),
        timeout: args.timeout,
        ..DnsConfig::default()
    };
    let discovery = Discovery::new(&dns).context("setting up the DNS resolver")?;
    let answer = discovery.lookup(args.source).await.with_context(|| format!("looking up {}", args.source))?;
    print!("{}", render_answer(args.source, &answer, &mut rand::rng()));
    Ok(())
}

/// The answer as printed by `lookup`: the records sorted by precedence (zone-file lines),
/// then the relay addresses in the order the daemon tries them (equal precedence shuffled
/// with `rng`, as the daemon does).
pub fn render_answer(source: IpAddr, answer: &Answer, rng: &mut impl rand::Rng) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "; AMTRELAY records of {source} at {}", answer.name);
    let mut records = answer.records.clone();
    records.sort_by_key(|r| r.rdata.precedence);
    for r in &records {
        let _ = writeln!(out, "{r}");
    }
    for s in &answer.skipped {
        let _ = writeln!(out, "; skipped a malformed record: {s}");
    }
    let ttl = answer.ttl.as_secs();
    if let Some(negative) = answer.negative {
        let kind = match negative {
            mcast_driad::Negative::NxDomain => "NXDOMAIN",
            mcast_driad::Negative::NoData => "NODATA",
        };
        let _ = writeln!(out, "; no AMTRELAY record ({kind}); negative TTL {ttl} s: no AMT relay to use");
        return out;
    }
    if answer.no_relay {
        let _ = writeln!(
            out,
            "; a type-0 record: no AMT relay should be used for this source (for {ttl} s); it is not ingested"
        );
        return out;
    }
    for name in &answer.empty_names {
        let _ = writeln!(out, "; relay name {name} has no A/AAAA record: skipped");
    }
    for (name, error) in &answer.failed_names {
        let _ = writeln!(out, "; relay name {name} could not be resolved: {error}");
    }
    if answer.candidates.is_empty() {
        let _ = writeln!(out, "; no usable relay in these records (for {ttl} s)");
        return out;
    }
    let order = RelayOrder::new(answer.candidates.clone(), rng);
    let tied = order.candidates().windows(2).any(|w| w[0].precedence == w[1].precedence);
    let _ = writeln!(
        out,
        ";\n; relays in the order driad-ingest tries them{} (answer valid for {ttl} s):",
        if tied { ", random among equal precedence" } else { "" }
    );
    for (i, c) in order.candidates().iter().enumerate() {
        let d =
            if c.discovery_optional { "D=1 (Request straight to the relay)" } else { "D=0 (Relay Discovery first)" };
        let via = c.via_name.as_ref().map(|n| format!(" via {n}")).unwrap_or_default();
        let _ = writeln!(out, ";  {}. {}  precedence {}  {d}{via}", i + 1, c.addr, c.precedence);
    }
    out
}

/// The relay argument: an IPv4 or IPv6 address, `.` (type 0), or a domain name.
pub fn parse_relay(text: &str) -> anyhow::Result<Relay> {
    if text == "." {
        return Ok(Relay::None);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            bail!("{ip} cannot be a relay address");
        }
        return Ok(match ip {
            IpAddr::V4(v4) => Relay::Ipv4(v4),
            IpAddr::V6(v6) => Relay::Ipv6(v6),
        });
    }
    let name: DomainName = text.parse().map_err(|e| anyhow::anyhow!("relay {text:?}: {e}"))?;
    if name.is_root() {
        bail!("relay {text:?}: the root is not a relay name (use `.` for type 0)");
    }
    Ok(Relay::Name(name))
}

pub fn zone_record(args: &ZoneRecordArgs) -> anyhow::Result<String> {
    let relay = parse_relay(&args.relay)?;
    let record = AmtRelay { precedence: args.precedence, discovery_optional: args.discovery_optional, relay };
    let owner = reverse_name(args.source);
    let ttl = args.ttl.map(|t| format!(" {t}")).unwrap_or_default();
    let presentation = format!("{owner}{ttl} IN AMTRELAY {record}");
    let generic = format!("{owner}{ttl} IN TYPE260 {}", record.to_generic());
    let what = match &record.relay {
        Relay::None => "no relay (type 0)".to_owned(),
        Relay::Ipv4(a) => format!("{a} (type 1)"),
        Relay::Ipv6(a) => format!("{a} (type 2)"),
        Relay::Name(n) => format!("{n} (type 3)"),
        Relay::Unknown { kind, .. } => format!("type {kind}"),
    };
    let d = if record.discovery_optional {
        "D=1: gateways may send a Request straight to the relay"
    } else {
        "D=0: gateways send Relay Discovery first"
    };
    let mut out = format!("; AMT relay of {}: {what}, precedence {}, {d}\n", args.source, args.precedence);
    if args.generic {
        let _ = writeln!(out, "{generic}");
        let _ = writeln!(out, "; presentation form (DNS servers with AMTRELAY support, RFC 8777 §4.3):");
        let _ = writeln!(out, "; {presentation}");
    } else {
        let _ = writeln!(out, "{presentation}");
        let _ = writeln!(out, "; RFC 3597 generic form, for DNS servers without AMTRELAY support:");
        let _ = writeln!(out, "; {generic}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use mcast_driad::{Candidate, Name, RelayRecord};
    use rand::SeedableRng;

    fn args(source: &str, relay: &str) -> ZoneRecordArgs {
        ZoneRecordArgs {
            source: source.parse().unwrap(),
            relay: relay.into(),
            precedence: 10,
            discovery_optional: false,
            generic: false,
            ttl: None,
        }
    }

    #[test]
    fn relay_kinds() {
        assert_eq!(parse_relay("203.0.113.15").unwrap(), Relay::Ipv4("203.0.113.15".parse().unwrap()));
        assert_eq!(parse_relay("2001:db8::15").unwrap(), Relay::Ipv6("2001:db8::15".parse().unwrap()));
        assert_eq!(parse_relay(".").unwrap(), Relay::None);
        let Relay::Name(n) = parse_relay("amtrelays.example.com").unwrap() else { panic!() };
        assert_eq!(n.to_string(), "amtrelays.example.com.");
        assert!(parse_relay("232.1.1.1").is_err());
        assert!(parse_relay("bad name.example").is_err());
    }

    #[test]
    fn the_generic_form_round_trips() {
        for relay in ["203.0.113.15", "2001:db8::15", "amtrelays.example.com.", "."] {
            for d in [false, true] {
                let mut a = args("198.51.100.12", relay);
                a.discovery_optional = d;
                let text = zone_record(&a).unwrap();
                let presentation = text.lines().nth(1).unwrap().split(" AMTRELAY ").nth(1).unwrap();
                let generic = text.lines().nth(3).unwrap().split(" TYPE260 ").nth(1).unwrap();
                let p: AmtRelay = presentation.parse().unwrap();
                let g = AmtRelay::from_generic(generic).unwrap();
                assert_eq!(p, g, "{text}");
                assert_eq!(p.discovery_optional, d);
            }
        }
    }

    #[test]
    fn lookup_output_orders_relays_and_shows_the_d_bit() {
        let owner = Name::from_ascii("10.100.51.198.in-addr.arpa.").unwrap();
        let rec = |s: &str| RelayRecord { owner: owner.clone(), ttl: 30, rdata: s.parse().unwrap() };
        let cand = |a: &str, p: u8, d: bool| Candidate {
            addr: a.parse().unwrap(),
            precedence: p,
            discovery_optional: d,
            via_name: None,
        };
        let answer = Answer {
            name: owner.clone(),
            records: vec![rec("20 1 1 203.0.113.16"), rec("10 0 1 203.0.113.15")],
            skipped: vec![],
            candidates: vec![cand("203.0.113.16", 20, true), cand("203.0.113.15", 10, false)],
            ttl: Duration::from_secs(30),
            no_relay: false,
            negative: None,
            empty_names: vec![],
            failed_names: vec![],
        };
        let text =
            render_answer("198.51.100.10".parse().unwrap(), &answer, &mut rand::rngs::SmallRng::seed_from_u64(1));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 10 0 1 203.0.113.15");
        assert_eq!(lines[2], "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 20 1 1 203.0.113.16");
        assert!(text.contains(";  1. 203.0.113.15  precedence 10  D=0"), "{text}");
        assert!(text.contains(";  2. 203.0.113.16  precedence 20  D=1"), "{text}");
    }
}
