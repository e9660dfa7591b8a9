//! Which records count (the type-0 policy) and in which order the relays are tried.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use hickory_proto::rr::Name;
use mcast_wire::amtrelay::{AmtRelay, DomainName, Relay};
use rand::Rng;
use rand::seq::SliceRandom;

/// One AMTRELAY record as found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// The owner (the reverse name, or the end of its CNAME/DNAME chain).
    pub owner: Name,
    /// The record's TTL in seconds.
    pub ttl: u32,
    /// The record data.
    pub rdata: AmtRelay,
}

impl fmt::Display for RelayRecord {
    /// `owner TTL IN AMTRELAY precedence D type relay`, the zone-file line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} IN AMTRELAY {}", self.owner, self.ttl, self.rdata)
    }
}

/// A relay address to try, from a type 1 or 2 record or from the A/AAAA records of a type-3
/// name, which inherit the record's precedence and D bit (RFC 8777 §4.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The relay address.
    pub addr: IpAddr,
    /// Lower is tried first (§4.2.1).
    pub precedence: u8,
    /// D bit (§4.2.2): the gateway may skip Relay Discovery and send a Request directly.
    pub discovery_optional: bool,
    /// The type-3 name this address came from.
    pub via_name: Option<DomainName>,
}

/// What the records say once the type-0 policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices (into the input) of the records to use: types 1, 2 and 3 ahead of the cut-off.
    pub use_records: Vec<usize>,
    /// Indices of the type-0 records at the cut-off precedence (their TTL rules a "no relay").
    pub type0_records: Vec<usize>,
    /// The precedence of the best type-0 record, if any: nothing at or after it is used.
    pub cut_off: Option<u8>,
    /// True when a type-0 record leaves nothing to use: "no AMT relay for this source".
    pub no_relay: bool,
}

/// The type-0 policy. RFC 8777 §4.2.3 defines type 0 as "no AMT relay should be used for
/// multicast traffic from this source" but not how it combines with other records, so here
/// the records are read in precedence order and **a type-0 record ends the list**: relays with a
/// precedence lower (better) than the best type-0 record are used, those at or after it are
/// not. Consequently
///
/// * type 0 in the best tier (alone or next to relays of the same precedence) means no relay;
/// * `10 relayA`, `20 type 0`, `30 relayB`: relayA only, and if it fails there is nothing else;
/// * a type-0 record after all relays changes nothing.
///
/// Records of an unassigned relay type (4–127) are not considered (§4.2.3).
pub fn plan(records: &[AmtRelay]) -> Plan {
    let cut_off = records.iter().filter(|r| r.relay == Relay::None).map(|r| r.precedence).min();
    let use_records: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.relay, Relay::Ipv4(_) | Relay::Ipv6(_) | Relay::Name(_)))
        .filter(|(_, r)| cut_off.is_none_or(|c| r.precedence < c))
        .map(|(i, _)| i)
        .collect();
    let type0_records = match cut_off {
        Some(c) => records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.relay == Relay::None && r.precedence == c)
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let no_relay = cut_off.is_some() && use_records.is_empty();
    Plan { use_records, type0_records, cut_off, no_relay }
}

/// The relays of a source in the order they are tried: by precedence, lowest first, and in a
/// uniformly random order among equal precedence (RFC 8777 §3.1.2: precedence ahead of address
/// selection, then a non-deterministic choice for load balancing).
///
/// An address listed more than once (say as a type-1 record and behind a type-3 name) appears
/// once, at its best precedence; its D bit is set only if every listing at that precedence
/// sets it (D = 1 skips a safety step, so it has to be unanimous).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayOrder {
    candidates: Vec<Candidate>,
}

impl RelayOrder {
    /// Orders `candidates`, shuffling each precedence tier with `rng`.
    pub fn new<R: Rng + ?Sized>(candidates: Vec<Candidate>, rng: &mut R) -> RelayOrder {
        let mut best: BTreeMap<IpAddr, Candidate> = BTreeMap::new();
        for c in candidates {
            match best.get_mut(&c.addr) {
                None => {
                    best.insert(c.addr, c);
                }
                Some(b) if c.precedence < b.precedence => *b = c,
                Some(b) if c.precedence == b.precedence => {
                    b.discovery_optional &= c.discovery_optional;
                    if b.via_name.is_some() && c.via_name.is_none() {
                        b.via_name = None;
                    }
                }
                Some(_) => {}
            }
        }
        // BTreeMap order is deterministic, so the shuffle alone decides the order in a tier.
        let mut candidates: Vec<Candidate> = best.into_values().collect();
        candidates.sort_by_key(|c| c.precedence);
        let mut start = 0;
        while start < candidates.len() {
            let p = candidates[start].precedence;
            let end = start + candidates[start..].iter().take_while(|c| c.precedence == p).count();
            candidates[start..end].shuffle(rng);
            start = end;
        }
        RelayOrder { candidates }
    }

    /// The candidates in the order they are tried.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Whether there is no candidate at all.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The candidate for `addr`, if listed.
    pub fn get(&self, addr: IpAddr) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.addr == addr)
    }

    /// The first candidate for which `usable` holds (e.g. not held down).
    pub fn first_usable(&self, mut usable: impl FnMut(IpAddr) -> bool) -> Option<&Candidate> {
        self.candidates.iter().find(|c| usable(c.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn rec(s: &str) -> AmtRelay {
        s.parse().unwrap()
    }

    fn cand(addr: &str, precedence: u8) -> Candidate {
        Candidate { addr: addr.parse().unwrap(), precedence, discovery_optional: false, via_name: None }
    }

    fn addrs(o: &RelayOrder) -> Vec<String> {
        o.candidates().iter().map(|c| c.addr.to_string()).collect()
    }

    #[test]
    fn sorted_by_precedence_lowest_first() {
        let mut rng = SmallRng::seed_from_u64(1);
        let o = RelayOrder::new(
            vec![cand("203.0.113.30", 30), cand("203.0.113.10", 10), cand("2001:db8::20", 20)],
            &mut rng,
        );
        assert_eq!(addrs(&o), ["203.0.113.10", "2001:db8::20", "203.0.113.30"]);
    }

    #[test]
    fn equal_precedence_is_shuffled_reproducibly_with_a_seed() {
        let input = || (1..=6).map(|i| cand(&format!("203.0.113.{i}"), 10)).collect::<Vec<_>>();
        let a = RelayOrder::new(input(), &mut SmallRng::seed_from_u64(7));
        let b = RelayOrder::new(input(), &mut SmallRng::seed_from_u64(7));
        assert_eq!(a, b, "same seed, same order");
        let orders: std::collections::BTreeSet<Vec<String>> =
            (0..20).map(|s| addrs(&RelayOrder::new(input(), &mut SmallRng::seed_from_u64(s)))).collect();
        assert!(orders.len() > 10, "different seeds give different orders: {}", orders.len());
    }

    #[test]
    fn first_choice_is_roughly_uniform_among_equals() {
        let mut rng = SmallRng::seed_from_u64(42);
        let input =
            vec![cand("203.0.113.1", 5), cand("203.0.113.2", 5), cand("203.0.113.3", 5), cand("203.0.113.9", 9)];
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let n = 30_000;
        for _ in 0..n {
            let o = RelayOrder::new(input.clone(), &mut rng);
            *counts.entry(o.candidates()[0].addr.to_string()).or_default() += 1;
            assert_eq!(o.candidates()[3].addr.to_string(), "203.0.113.9", "the worse tier is always last");
        }
        assert_eq!(counts.len(), 3);
        // Each expected 10 000; 5 sigma is about 410.
        for (addr, c) in counts {
            assert!((9_500..=10_500).contains(&c), "{addr} first {c} times of {n}");
        }
    }

    #[test]
    fn duplicates_keep_the_best_precedence_and_a_unanimous_d_bit() {
        let name: DomainName = "relays.example.net.".parse().unwrap();
        let mut via = cand("203.0.113.15", 10);
        via.via_name = Some(name);
        via.discovery_optional = true;
        let mut direct = cand("203.0.113.15", 10);
        direct.discovery_optional = false;
        let worse = cand("203.0.113.15", 50);
        let o = RelayOrder::new(vec![worse, via.clone(), direct], &mut SmallRng::seed_from_u64(0));
        assert_eq!(o.candidates().len(), 1);
        let c = &o.candidates()[0];
        assert_eq!(c.precedence, 10);
        assert!(!c.discovery_optional, "one listing without D: discovery required");
        let o = RelayOrder::new(vec![via.clone(), via], &mut SmallRng::seed_from_u64(0));
        assert!(o.candidates()[0].discovery_optional);
        assert!(o.candidates()[0].via_name.is_some());
    }

    #[test]
    fn first_usable_skips() {
        let o = RelayOrder::new(vec![cand("203.0.113.1", 1), cand("203.0.113.2", 2)], &mut SmallRng::seed_from_u64(0));
        let down: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(o.first_usable(|a| a != down).unwrap().addr.to_string(), "203.0.113.2");
        assert!(o.first_usable(|_| false).is_none());
        assert_eq!(o.get(down).unwrap().precedence, 1);
    }

    #[test]
    fn type0_alone_means_no_relay() {
        let p = plan(&[rec("0 0 0 .")]);
        assert!(p.no_relay);
        assert_eq!(p.type0_records, [0]);
        assert!(p.use_records.is_empty());
    }

    #[test]
    fn type0_in_the_best_tier_wins_over_relays_of_the_same_and_worse_precedence() {
        let p = plan(&[rec("10 0 1 203.0.113.15"), rec("10 0 0 ."), rec("20 0 1 203.0.113.16")]);
        assert!(p.no_relay);
        assert_eq!(p.cut_off, Some(10));
        assert_eq!(p.type0_records, [1]);
    }

    #[test]
    fn type0_after_some_relays_cuts_off_the_rest() {
        let records = [rec("30 0 1 203.0.113.30"), rec("20 0 0 ."), rec("10 0 1 203.0.113.10"), rec("40 0 0 .")];
        let p = plan(&records);
        assert!(!p.no_relay);
        assert_eq!(p.use_records, [2]);
        assert_eq!(p.cut_off, Some(20));
        assert_eq!(p.type0_records, [1]);
    }

    #[test]
    fn type0_after_all_relays_changes_nothing() {
        let p = plan(&[rec("10 0 1 203.0.113.10"), rec("20 1 3 relays.example.net."), rec("255 0 0 .")]);
        assert!(!p.no_relay);
        assert_eq!(p.use_records, [0, 1]);
    }

    #[test]
    fn unassigned_types_are_not_considered() {
        let unknown = AmtRelay::parse(&[5, 0x04, 1, 2, 3]).unwrap();
        let p = plan(&[unknown.clone(), rec("10 0 1 203.0.113.10")]);
        assert_eq!(p.use_records, [1]);
        let p = plan(&[unknown]);
        assert!(p.use_records.is_empty());
        assert!(!p.no_relay, "nothing usable is not the same as type 0");
    }

    #[test]
    fn record_display_is_the_zone_line() {
        let r = RelayRecord {
            owner: Name::from_ascii("10.100.51.198.in-addr.arpa.").unwrap(),
            ttl: 300,
            rdata: rec("10 1 3 relays.example.net."),
        };
        assert_eq!(r.to_string(), "10.100.51.198.in-addr.arpa. 300 IN AMTRELAY 10 1 3 relays.example.net.");
    }
}
