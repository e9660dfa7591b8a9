//! RFC 2782 target selection: lowest priority first; within a priority, a weighted random
//! order (each remaining record is picked with probability proportional to its weight;
//! weight-0 records have a small chance only, and come last when all others are gone).

use rand::RngExt;

/// A DORMS server from an SRV record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Target {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight within the priority.
    pub weight: u16,
    /// Host name without the trailing dot.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// `host:port`.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The HTTPS base URL: `https://host` for port 443, else `https://host:port`.
    pub fn base_url(&self) -> String {
        if self.port == 443 { format!("https://{}", self.host) } else { format!("https://{}:{}", self.host, self.port) }
    }
}

/// Orders `targets` for one connection attempt (RFC 2782 "Usage rules"). A single target `.`
/// (the service is decidedly not available) gives an empty list.
pub fn order(targets: &[Target], rng: &mut impl rand::Rng) -> Vec<Target> {
    if targets.len() == 1 && (targets[0].host.is_empty() || targets[0].host == ".") {
        return Vec::new();
    }
    let mut sorted: Vec<Target> = targets.iter().filter(|t| !t.host.is_empty() && t.host != ".").cloned().collect();
    // Sort by priority; within a priority put the weight-0 records first (RFC 2782), and
    // keep the answer order otherwise.
    sorted.sort_by_key(|t| (t.priority, t.weight != 0));
    let mut out = Vec::with_capacity(sorted.len());
    let mut i = 0;
    while i < sorted.len() {
        let priority = sorted[i].priority;
        let end = sorted[i..].iter().position(|t| t.priority != priority).map_or(sorted.len(), |n| i + n);
        let mut group: Vec<Target> = sorted[i..end].to_vec();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|t| u32::from(t.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut running = 0u32;
            let chosen = group
                .iter()
                .position(|t| {
                    running += u32::from(t.weight);
                    running >= pick
                })
                .unwrap_or(group.len() - 1);
            out.push(group.remove(chosen));
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn t(priority: u16, weight: u16, host: &str) -> Target {
        Target { priority, weight, host: host.to_owned(), port: 443 }
    }

    fn hosts(v: &[Target]) -> Vec<&str> {
        v.iter().map(|t| t.host.as_str()).collect()
    }

    #[test]
    fn priority_first_even_when_the_answer_is_unsorted() {
        let mut rng = SmallRng::seed_from_u64(1);
        // The original grouped consecutive records only; here priority 0 always comes first.
        let targets = [t(10, 1, "b"), t(0, 1, "a"), t(10, 1, "c"), t(0, 1, "d"), t(20, 0, "z")];
        for _ in 0..50 {
            let o = order(&targets, &mut rng);
            let first: std::collections::BTreeSet<&str> = hosts(&o[..2]).into_iter().collect();
            assert_eq!(first, ["a", "d"].into());
            assert_eq!(o[4].host, "z");
        }
    }

    #[test]
    fn weights_give_proportional_first_choices() {
        let mut rng = SmallRng::seed_from_u64(7);
        let targets = [t(0, 1, "light"), t(0, 3, "heavy"), t(0, 0, "zero")];
        let mut heavy_first = 0;
        let mut zero_last = 0;
        for _ in 0..4000 {
            let o = order(&targets, &mut rng);
            assert_eq!(o.len(), 3);
            heavy_first += usize::from(o[0].host == "heavy");
            zero_last += usize::from(o[2].host == "zero");
        }
        // First pick from 0..=4: zero 1/5 (pick 0), light 1/5, heavy 3/5. Zero last:
        // heavy first then light (3/5 × 1/2) or light first then heavy (1/5 × 3/4) = 0.45.
        assert!((2200..2600).contains(&heavy_first), "{heavy_first}");
        assert!((1600..2000).contains(&zero_last), "{zero_last}");
    }

    #[test]
    fn a_dot_target_means_no_service() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(order(&[t(0, 0, ".")], &mut rng).is_empty());
        assert!(order(&[], &mut rng).is_empty());
        assert_eq!(t(0, 0, "dorms.example.net").base_url(), "https://dorms.example.net");
        let other = Target { port: 8443, ..t(0, 0, "d") };
        assert_eq!(other.base_url(), "https://d:8443");
        assert_eq!(other.server(), "d:8443");
    }
}
