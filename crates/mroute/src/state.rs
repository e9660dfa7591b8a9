//! Desired forwarding state and its reconciliation with the kernel.
//!
//! [`ForwardingState`] holds, for one address family:
//!
//! * the **desired** routes: (S,G) → (incoming interface name, set of outgoing interface names);
//! * the **interfaces** that currently exist (name → ifindex), fed from the link watcher;
//! * what is **installed** in the kernel (VIF slots and MFC entries), as far as it knows.
//!
//! [`ForwardingState::plan`] is a pure function from those to the kernel operations that bring
//! the kernel to the desired state, and [`ForwardingState::apply`] executes them on a
//! [`ForwardingTable`], recording each success in the installed state and returning each
//! failure; the desired state is never touched by applying, so a failed operation is simply
//! planned again on the next call.
//!
//! Rules:
//!
//! * An interface gets a VIF while it exists and is either *managed*
//!   ([`ForwardingState::manage_interface`]) or named by a desired route.
//! * A route is installed while its incoming interface exists; its outgoing VIFs are those of
//!   its outgoing interfaces that exist (possibly none: an entry with no outgoing VIF makes the
//!   kernel drop the traffic instead of queueing it and raising NOCACHE upcalls). A route whose
//!   incoming interface is absent stays desired and is installed when the interface appears.
//! * An interface that disappears, or comes back with another ifindex (a TUN deleted and
//!   recreated by driad-ingest), loses its VIF; the routes that used it are updated (outgoing)
//!   or removed (incoming), and re-installed on the new VIF when it is back.
//! * A VIF slot is never reused while an installed MFC entry still refers to it: the kernel
//!   keeps an entry's per-VIF thresholds when a VIF goes away, so an entry left pointing at a
//!   reused slot would forward to the wrong interface.
//!
//! Order of operations in a plan: MFC deletions, VIF deletions, VIF additions, MFC sets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use mcast_wire::SourceGroup;

use crate::error::Error;
use crate::links::LinkEvent;
use crate::table::ForwardingTable;
use crate::{Family, MAX_VIFS, Vif};

/// One kernel operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `MRT_DEL_MFC`.
    DelMfc {
        /// The entry.
        sg: SourceGroup,
    },
    /// `MRT_DEL_VIF`.
    DelVif {
        /// The slot.
        vif: Vif,
        /// The interface it was for.
        name: String,
    },
    /// `MRT_ADD_VIF`.
    AddVif {
        /// The slot.
        vif: Vif,
        /// The interface.
        name: String,
        /// Its ifindex.
        ifindex: u32,
    },
    /// `MRT_ADD_MFC` (adds or replaces).
    SetMfc {
        /// The entry.
        sg: SourceGroup,
        /// Incoming VIF.
        iif: Vif,
        /// Outgoing VIFs, ascending.
        oifs: Vec<Vif>,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::DelMfc { sg } => write!(f, "del mfc ({sg})"),
            Op::DelVif { vif, name } => write!(f, "del {vif} ({name})"),
            Op::AddVif { vif, name, ifindex } => write!(f, "add {vif} = {name} (ifindex {ifindex})"),
            Op::SetMfc { sg, iif, oifs } => {
                write!(f, "set mfc ({sg}) iif {iif} oifs [")?;
                for (i, o) in oifs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{o}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// An operation that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {error}")]
pub struct ApplyError {
    /// What was attempted.
    pub op: Op,
    /// The failure.
    #[source]
    pub error: Error,
}

/// A desired route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Incoming interface (the native/TUN interface for pimwatch).
    pub iif: String,
    /// Outgoing interfaces (downstream interfaces with a Join).
    pub oifs: BTreeSet<String>,
}

/// An installed VIF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledVif {
    /// The interface name.
    pub name: String,
    /// The ifindex the VIF was added with.
    pub ifindex: u32,
}

/// An installed MFC entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledMfc {
    /// Incoming VIF.
    pub iif: Vif,
    /// Outgoing VIFs.
    pub oifs: BTreeSet<Vif>,
}

/// Desired and installed multicast forwarding state of one family; see the module docs.
#[derive(Debug, Clone)]
pub struct ForwardingState {
    family: Family,
    managed: BTreeSet<String>,
    desired: BTreeMap<SourceGroup, Route>,
    interfaces: BTreeMap<String, u32>,
    vifs: BTreeMap<Vif, InstalledVif>,
    mfcs: BTreeMap<SourceGroup, InstalledMfc>,
}

impl ForwardingState {
    /// Empty state for `family`.
    pub fn new(family: Family) -> ForwardingState {
        ForwardingState {
            family,
            managed: BTreeSet::new(),
            desired: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            vifs: BTreeMap::new(),
            mfcs: BTreeMap::new(),
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    // ----- interfaces -------------------------------------------------------------------------

    /// Keeps a VIF on `name` whenever it exists, even with no route using it (pimwatch's
    /// downstream and native interfaces).
    pub fn manage_interface(&mut self, name: impl Into<String>) {
        self.managed.insert(name.into());
    }

    /// Stops keeping a VIF on `name` unless a route needs it.
    pub fn unmanage_interface(&mut self, name: &str) {
        self.managed.remove(name);
    }

    /// Records that interface `name` exists with `ifindex` (added, or recreated).
    pub fn set_interface(&mut self, name: impl Into<String>, ifindex: u32) {
        self.interfaces.insert(name.into(), ifindex);
    }

    /// Records that interface `name` no longer exists.
    pub fn remove_interface(&mut self, name: &str) {
        self.interfaces.remove(name);
    }

    /// The ifindex of a present interface.
    pub fn interface(&self, name: &str) -> Option<u32> {
        self.interfaces.get(name).copied()
    }

    /// Feeds a link watcher event. Returns whether the interface table changed (then call
    /// [`ForwardingState::apply`]). A removal for an ifindex other than the one recorded (a
    /// late event for an interface already recreated) is ignored.
    pub fn on_link_event(&mut self, event: &LinkEvent) -> bool {
        match event {
            LinkEvent::Added { name, ifindex, .. } => {
                self.interfaces.insert(name.clone(), *ifindex).is_none_or(|old| old != *ifindex)
            }
            LinkEvent::Removed { name, ifindex } => {
                if self.interfaces.get(name) == Some(ifindex) {
                    self.interfaces.remove(name);
                    true
                } else {
                    false
                }
            }
            LinkEvent::AddressAdded { .. } | LinkEvent::AddressRemoved { .. } => false,
        }
    }

    // ----- desired routes ---------------------------------------------------------------------

    fn check_family(&self, sg: SourceGroup) -> Result<(), Error> {
        if Family::of(sg.source) == self.family && Family::of(sg.group) == self.family {
            Ok(())
        } else {
            Err(Error::FamilyMismatch { expected: self.family, what: format!("({sg})") })
        }
    }

    /// Sets the desired route of `sg`. An empty `oifs` removes it.
    pub fn set_route<I, S>(&mut self, sg: SourceGroup, iif: &str, oifs: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.check_family(sg)?;
        let oifs: BTreeSet<String> = oifs.into_iter().map(Into::into).collect();
        if oifs.is_empty() {
            self.desired.remove(&sg);
        } else {
            self.desired.insert(sg, Route { iif: iif.to_owned(), oifs });
        }
        Ok(())
    }

    /// Adds `oif` to the route of `sg`, creating it with incoming interface `iif` if needed (an
    /// existing route keeps its incoming interface unless `iif` differs, which replaces it).
    pub fn add_oif(&mut self, sg: SourceGroup, iif: &str, oif: &str) -> Result<(), Error> {
        self.check_family(sg)?;
        let route = self.desired.entry(sg).or_default();
        if route.iif != iif {
            route.iif = iif.to_owned();
        }
        route.oifs.insert(oif.to_owned());
        Ok(())
    }

    /// Removes `oif` from the route of `sg`; the route goes when its last oif does.
    pub fn remove_oif(&mut self, sg: SourceGroup, oif: &str) {
        if let Some(route) = self.desired.get_mut(&sg) {
            route.oifs.remove(oif);
            if route.oifs.is_empty() {
                self.desired.remove(&sg);
            }
        }
    }

    /// Removes the route of `sg`.
    pub fn remove_route(&mut self, sg: SourceGroup) {
        self.desired.remove(&sg);
    }

    /// The desired route of `sg`.
    pub fn route(&self, sg: SourceGroup) -> Option<&Route> {
        self.desired.get(&sg)
    }

    /// All desired routes.
    pub fn routes(&self) -> impl Iterator<Item = (&SourceGroup, &Route)> {
        self.desired.iter()
    }

    // ----- installed state --------------------------------------------------------------------

    /// The installed VIFs.
    pub fn installed_vifs(&self) -> &BTreeMap<Vif, InstalledVif> {
        &self.vifs
    }

    /// The installed VIF of interface `name`.
    pub fn installed_vif(&self, name: &str) -> Option<Vif> {
        self.vifs.iter().find(|(_, v)| v.name == name).map(|(vif, _)| *vif)
    }

    /// The installed MFC entries.
    pub fn installed_mfcs(&self) -> &BTreeMap<SourceGroup, InstalledMfc> {
        &self.mfcs
    }

    /// Whether the kernel is believed to match the desired state (the plan is empty).
    pub fn is_converged(&self) -> bool {
        let (ops, unslotted) = self.compute();
        ops.is_empty() && unslotted.is_empty()
    }

    /// Forgets what is installed (for a new router after the old one was closed: the next
    /// [`ForwardingState::apply`] reinstalls everything). The desired state is kept.
    pub fn forget_installed(&mut self) {
        self.vifs.clear();
        self.mfcs.clear();
    }

    // ----- planning ---------------------------------------------------------------------------

    /// The operations that bring the kernel from the installed to the desired state.
    pub fn plan(&self) -> Vec<Op> {
        self.compute().0
    }

    /// Interfaces that want a VIF: present, and managed or used by a route.
    fn wanted_interfaces(&self) -> BTreeMap<&str, u32> {
        let used = self.desired.values().flat_map(|r| std::iter::once(&r.iif).chain(r.oifs.iter()));
        self.managed
            .iter()
            .chain(used)
            .filter_map(|name| self.interfaces.get(name).map(|&ifindex| (name.as_str(), ifindex)))
            .collect()
    }

    /// (plan, interfaces (name, ifindex) that want a VIF but found no free slot).
    fn compute(&self) -> (Vec<Op>, Vec<(String, u32)>) {
        let wanted = self.wanted_interfaces();

        // VIFs: keep an installed VIF if its interface is still wanted with the same ifindex
        // (and no other kept VIF already serves that name).
        let mut target: BTreeMap<&str, Vif> = BTreeMap::new();
        let mut del_vifs = Vec::new();
        for (&vif, installed) in &self.vifs {
            let keep = wanted.get(installed.name.as_str()) == Some(&installed.ifindex)
                && !target.contains_key(installed.name.as_str());
            if keep {
                target.insert(installed.name.as_str(), vif);
            } else {
                del_vifs.push(Op::DelVif { vif, name: installed.name.clone() });
            }
        }
        let mut reserved: BTreeSet<Vif> = self.vifs.keys().copied().collect();
        for mfc in self.mfcs.values() {
            reserved.insert(mfc.iif);
            reserved.extend(mfc.oifs.iter().copied());
        }
        let mut add_vifs = Vec::new();
        let mut unslotted = Vec::new();
        for (&name, &ifindex) in &wanted {
            if target.contains_key(name) {
                continue;
            }
            match (0..MAX_VIFS as u16).map(Vif).find(|v| !reserved.contains(v)) {
                Some(vif) => {
                    reserved.insert(vif);
                    target.insert(name, vif);
                    add_vifs.push(Op::AddVif { vif, name: name.to_owned(), ifindex });
                }
                None => unslotted.push((name.to_owned(), ifindex)),
            }
        }

        // MFC entries.
        let mut target_mfcs: BTreeMap<SourceGroup, (Vif, BTreeSet<Vif>)> = BTreeMap::new();
        for (sg, route) in &self.desired {
            let Some(&iif) = target.get(route.iif.as_str()) else { continue };
            let oifs = route
                .oifs
                .iter()
                .filter(|o| **o != route.iif)
                .filter_map(|o| target.get(o.as_str()).copied())
                .collect();
            target_mfcs.insert(*sg, (iif, oifs));
        }

        let mut ops = Vec::new();
        for sg in self.mfcs.keys() {
            if !target_mfcs.contains_key(sg) {
                ops.push(Op::DelMfc { sg: *sg });
            }
        }
        ops.extend(del_vifs);
        ops.extend(add_vifs);
        for (sg, (iif, oifs)) in target_mfcs {
            let same = self.mfcs.get(&sg).is_some_and(|m| m.iif == iif && m.oifs == oifs);
            if !same {
                ops.push(Op::SetMfc { sg, iif, oifs: oifs.into_iter().collect() });
            }
        }
        (ops, unslotted)
    }

    // ----- applying ---------------------------------------------------------------------------

    /// Plans and executes the operations on `table`, returning the failures (each is logged
    /// too). Successful operations update the installed state; failed ones are retried by the
    /// next call. A MFC entry whose VIFs could not be added is installed without the missing
    /// outgoing VIFs, or not at all (and any older version removed) if its incoming VIF is
    /// missing.
    pub fn apply<T: ForwardingTable + ?Sized>(&mut self, table: &mut T) -> Vec<ApplyError> {
        let (ops, unslotted) = self.compute();
        let mut errors = Vec::new();
        for (name, ifindex) in unslotted {
            // No slot was found: reported against the first out-of-range index.
            let op = Op::AddVif { vif: Vif(MAX_VIFS as u16), name, ifindex };
            errors.push(ApplyError { op, error: Error::NoFreeVif(self.family) });
        }
        for op in ops {
            if let Err(error) = self.execute(table, &op) {
                tracing::warn!(%op, %error, "multicast forwarding operation failed");
                errors.push(ApplyError { op, error });
            } else {
                tracing::debug!(%op, "multicast forwarding operation done");
            }
        }
        errors
    }

    fn execute<T: ForwardingTable + ?Sized>(&mut self, table: &mut T, op: &Op) -> Result<(), Error> {
        match op {
            Op::DelMfc { sg } => {
                table.del_mfc(*sg)?;
                self.mfcs.remove(sg);
            }
            Op::DelVif { vif, .. } => {
                table.del_vif(*vif)?;
                self.vifs.remove(vif);
            }
            Op::AddVif { vif, name, ifindex } => {
                table.add_vif_at(*vif, *ifindex)?;
                self.vifs.insert(*vif, InstalledVif { name: name.clone(), ifindex: *ifindex });
            }
            Op::SetMfc { sg, iif, oifs } => {
                if !self.vifs.contains_key(iif) {
                    // The incoming VIF could not be added: make sure no stale entry forwards.
                    if self.mfcs.contains_key(sg) {
                        table.del_mfc(*sg)?;
                        self.mfcs.remove(sg);
                    }
                    return Err(Error::UnknownVif(*iif));
                }
                let present: Vec<Vif> = oifs.iter().copied().filter(|o| self.vifs.contains_key(o)).collect();
                table.set_mfc(*sg, *iif, &present)?;
                self.mfcs.insert(*sg, InstalledMfc { iif: *iif, oifs: present.iter().copied().collect() });
                if present.len() != oifs.len() {
                    let missing = oifs.iter().find(|o| !self.vifs.contains_key(o)).copied().unwrap_or(*iif);
                    return Err(Error::UnknownVif(missing));
                }
            }
        }
        Ok(())
    }

    /// Removes every installed MFC entry and VIF (for exit), returning the failures. The
    /// desired state is kept, so a later [`ForwardingState::apply`] would reinstall it.
    pub fn flush<T: ForwardingTable + ?Sized>(&mut self, table: &mut T) -> Vec<ApplyError> {
        let mut ops: Vec<Op> = self.mfcs.keys().map(|sg| Op::DelMfc { sg: *sg }).collect();
        ops.extend(self.vifs.iter().map(|(vif, v)| Op::DelVif { vif: *vif, name: v.name.clone() }));
        let mut errors = Vec::new();
        for op in ops {
            if let Err(error) = self.execute(table, &op) {
                tracing::warn!(%op, %error, "flush operation failed");
                errors.push(ApplyError { op, error });
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel table: records calls, can be told to fail some, and checks the same
    /// preconditions as the real routers (slots free/used, VIFs of an entry exist).
    #[derive(Debug, Default)]
    struct Fake {
        vifs: BTreeMap<Vif, u32>,
        mfcs: BTreeMap<SourceGroup, (Vif, Vec<Vif>)>,
        calls: Vec<String>,
        fail_add_ifindex: BTreeSet<u32>,
        fail_set_mfc: bool,
    }

    impl ForwardingTable for Fake {
        fn family(&self) -> Family {
            Family::V4
        }
        fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<(), Error> {
            self.calls.push(format!("add {vif} {ifindex}"));
            if self.fail_add_ifindex.contains(&ifindex) {
                return Err(Error::os("MRT_ADD_VIF", std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
            }
            assert!(self.vifs.insert(vif, ifindex).is_none(), "slot {vif} reused while in use");
            Ok(())
        }
        fn del_vif(&mut self, vif: Vif) -> Result<(), Error> {
            self.calls.push(format!("del {vif}"));
            self.vifs.remove(&vif).map(|_| ()).ok_or(Error::UnknownVif(vif))
        }
        fn set_mfc(&mut self, sg: SourceGroup, iif: Vif, oifs: &[Vif]) -> Result<(), Error> {
            self.calls.push(format!("set {sg} {iif} {oifs:?}"));
            if self.fail_set_mfc {
                return Err(Error::os("MRT_ADD_MFC", std::io::Error::from_raw_os_error(libc::ENOMEM)));
            }
            assert!(self.vifs.contains_key(&iif));
            assert!(oifs.iter().all(|o| self.vifs.contains_key(o)));
            self.mfcs.insert(sg, (iif, oifs.to_vec()));
            Ok(())
        }
        fn del_mfc(&mut self, sg: SourceGroup) -> Result<bool, Error> {
            self.calls.push(format!("delmfc {sg}"));
            Ok(self.mfcs.remove(&sg).is_some())
        }
    }

    fn sg(s: &str, g: &str) -> SourceGroup {
        format!("{s},{g}").parse().unwrap()
    }

    fn v(n: u16) -> Vif {
        Vif(n)
    }

    fn set(sg: SourceGroup, iif: u16, oifs: &[u16]) -> Op {
        Op::SetMfc { sg, iif: Vif(iif), oifs: oifs.iter().map(|&o| Vif(o)).collect() }
    }

    fn add(vif: u16, name: &str, ifindex: u32) -> Op {
        Op::AddVif { vif: Vif(vif), name: name.into(), ifindex }
    }

    fn del(vif: u16, name: &str) -> Op {
        Op::DelVif { vif: Vif(vif), name: name.into() }
    }

    /// Applies, asserts no errors, that the plan is then empty, and that the fake kernel
    /// matches the installed state.
    fn converge(st: &mut ForwardingState, k: &mut Fake) {
        let errors = st.apply(k);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(st.plan().is_empty(), "not converged: {:?}", st.plan());
        let vifs: BTreeMap<Vif, u32> = st.installed_vifs().iter().map(|(v, i)| (*v, i.ifindex)).collect();
        assert_eq!(vifs, k.vifs);
        let mfcs: BTreeMap<SourceGroup, (Vif, Vec<Vif>)> =
            st.installed_mfcs().iter().map(|(sg, m)| (*sg, (m.iif, m.oifs.iter().copied().collect()))).collect();
        assert_eq!(mfcs, k.mfcs);
    }

    fn pimwatch_like() -> (ForwardingState, Fake) {
        let mut st = ForwardingState::new(Family::V4);
        st.manage_interface("native");
        st.manage_interface("down1");
        st.manage_interface("down2");
        st.set_interface("down1", 11);
        st.set_interface("down2", 12);
        (st, Fake::default())
    }

    #[test]
    fn managed_interfaces_get_vifs_and_routes_wait_for_the_iif() {
        let (mut st, mut k) = pimwatch_like();
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1"]).unwrap();
        assert_eq!(st.plan(), vec![add(0, "down1", 11), add(1, "down2", 12)]);
        converge(&mut st, &mut k);
        assert!(k.mfcs.is_empty(), "no iif yet, so no entry");

        // The native interface appears: one VIF and the waiting entry.
        st.set_interface("native", 20);
        assert_eq!(st.plan(), vec![add(2, "native", 20), set(a, 2, &[0])]);
        converge(&mut st, &mut k);
    }

    #[test]
    fn oif_added_and_removed() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.add_oif(a, "native", "down1").unwrap();
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs[&a], (v(2), vec![v(0)]));

        st.add_oif(a, "native", "down2").unwrap();
        assert_eq!(st.plan(), vec![set(a, 2, &[0, 1])]);
        converge(&mut st, &mut k);

        st.remove_oif(a, "down1");
        assert_eq!(st.plan(), vec![set(a, 2, &[1])]);
        converge(&mut st, &mut k);

        st.remove_oif(a, "down2");
        assert_eq!(st.plan(), vec![Op::DelMfc { sg: a }]);
        converge(&mut st, &mut k);
        assert_eq!(k.vifs.len(), 3, "managed VIFs stay");
    }

    #[test]
    fn duplicate_updates_plan_nothing() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.add_oif(a, "native", "down1").unwrap();
        converge(&mut st, &mut k);
        let before = k.calls.len();
        st.add_oif(a, "native", "down1").unwrap();
        st.set_interface("native", 20);
        assert!(st.plan().is_empty());
        assert!(st.apply(&mut k).is_empty());
        assert_eq!(k.calls.len(), before);
    }

    #[test]
    fn native_interface_disappears_and_comes_back_with_a_new_ifindex() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        let b = sg("192.0.2.2", "232.1.1.2");
        st.set_route(a, "native", ["down1"]).unwrap();
        st.set_route(b, "native", ["down1", "down2"]).unwrap();
        converge(&mut st, &mut k);
        assert_eq!(st.installed_vif("native"), Some(v(2)));

        // Deleted: its entries go, its VIF goes, the routes stay desired.
        assert!(st.on_link_event(&LinkEvent::Removed { name: "native".into(), ifindex: 20 }));
        assert_eq!(st.plan(), vec![Op::DelMfc { sg: a }, Op::DelMfc { sg: b }, del(2, "native")]);
        converge(&mut st, &mut k);
        assert_eq!(st.routes().count(), 2);

        // Recreated with a new ifindex: the lowest free slot (2 again, since nothing refers
        // to it any more) and both entries.
        assert!(st.on_link_event(&LinkEvent::Added { name: "native".into(), ifindex: 33, up: true, running: true }));
        assert_eq!(st.plan(), vec![add(2, "native", 33), set(a, 2, &[0]), set(b, 2, &[0, 1])]);
        converge(&mut st, &mut k);
    }

    #[test]
    fn recreated_before_the_removal_is_seen_moves_to_a_fresh_slot() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1"]).unwrap();
        converge(&mut st, &mut k);

        // Only the new ifindex is seen. The old slot 2 is still referenced by the installed
        // entry, so the new VIF takes slot 3; the entry is then replaced (new parent).
        st.set_interface("native", 34);
        assert_eq!(st.plan(), vec![del(2, "native"), add(3, "native", 34), set(a, 3, &[0])]);
        converge(&mut st, &mut k);
        // A late removal for the old ifindex changes nothing.
        assert!(!st.on_link_event(&LinkEvent::Removed { name: "native".into(), ifindex: 20 }));
        assert!(st.plan().is_empty());
    }

    #[test]
    fn downstream_disappears_and_returns() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1", "down2"]).unwrap();
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs[&a], (v(2), vec![v(0), v(1)]));

        st.remove_interface("down1");
        assert_eq!(st.plan(), vec![del(0, "down1"), set(a, 2, &[1])]);
        converge(&mut st, &mut k);

        // Slot 0 is free and unreferenced again, so down1 gets it back.
        st.set_interface("down1", 41);
        assert_eq!(st.plan(), vec![add(0, "down1", 41), set(a, 2, &[0, 1])]);
        converge(&mut st, &mut k);
    }

    #[test]
    fn all_oifs_absent_installs_an_entry_without_oifs() {
        let mut st = ForwardingState::new(Family::V4);
        let mut k = Fake::default();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["gone"]).unwrap();
        assert_eq!(st.plan(), vec![add(0, "native", 20), set(a, 0, &[])]);
        converge(&mut st, &mut k);
    }

    #[test]
    fn unmanaged_vifs_come_and_go_with_routes() {
        let mut st = ForwardingState::new(Family::V4);
        let mut k = Fake::default();
        st.set_interface("native", 20);
        st.set_interface("d", 21);
        let a = sg("192.0.2.1", "232.1.1.1");
        assert!(st.plan().is_empty());
        st.set_route(a, "native", ["d"]).unwrap();
        converge(&mut st, &mut k);
        st.remove_route(a);
        // Slots were handed out in name order: d = vif0, native = vif1.
        assert_eq!(st.plan(), vec![Op::DelMfc { sg: a }, del(0, "d"), del(1, "native")]);
        converge(&mut st, &mut k);
        assert!(k.vifs.is_empty());
    }

    #[test]
    fn iif_is_never_an_oif_and_iif_change_replaces_the_entry() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["native", "down1"]).unwrap();
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs[&a], (v(2), vec![v(0)]));
        st.set_route(a, "down2", ["down1"]).unwrap();
        assert_eq!(st.plan(), vec![set(a, 1, &[0])]);
        converge(&mut st, &mut k);
    }

    #[test]
    fn failures_keep_desired_state_and_are_retried() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1", "down2"]).unwrap();

        // down2's VIF cannot be added: the entry goes in without it, and the error says so.
        k.fail_add_ifindex.insert(12);
        let errors = st.apply(&mut k);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(matches!(errors[0].op, Op::AddVif { ref name, .. } if name == "down2"));
        assert_eq!(k.mfcs[&a], (v(2), vec![v(0)]));
        assert!(!st.is_converged());

        // Fixed: the retry adds the VIF and completes the entry.
        k.fail_add_ifindex.clear();
        assert_eq!(st.plan(), vec![add(1, "down2", 12), set(a, 2, &[0, 1])]);
        converge(&mut st, &mut k);

        // A failing MFC update leaves the installed record as it was.
        k.fail_set_mfc = true;
        st.remove_oif(a, "down2");
        assert_eq!(st.apply(&mut k).len(), 1);
        assert_eq!(st.installed_mfcs()[&a].oifs, [v(0), v(1)].into_iter().collect());
        k.fail_set_mfc = false;
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs[&a], (v(2), vec![v(0)]));
    }

    #[test]
    fn iif_vif_failure_removes_a_stale_entry() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1"]).unwrap();
        converge(&mut st, &mut k);
        // The native interface is recreated, and its new VIF cannot be added.
        st.set_interface("native", 35);
        k.fail_add_ifindex.insert(35);
        let errors = st.apply(&mut k);
        assert_eq!(errors.len(), 2);
        assert!(!k.mfcs.contains_key(&a), "no entry may point at the old VIF");
        k.fail_add_ifindex.clear();
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs[&a].1, vec![v(0)]);
    }

    #[test]
    fn slots_run_out_cleanly() {
        let mut st = ForwardingState::new(Family::V4);
        let mut k = Fake::default();
        for i in 0..33u32 {
            st.manage_interface(format!("if{i:02}"));
            st.set_interface(format!("if{i:02}"), 100 + i);
        }
        let errors = st.apply(&mut k);
        assert_eq!(errors.len(), 1);
        assert!(matches!(errors[0].error, Error::NoFreeVif(Family::V4)));
        assert_eq!(k.vifs.len(), 32);
    }

    #[test]
    fn flush_removes_everything_and_keeps_desired() {
        let (mut st, mut k) = pimwatch_like();
        st.set_interface("native", 20);
        let a = sg("192.0.2.1", "232.1.1.1");
        st.set_route(a, "native", ["down1"]).unwrap();
        converge(&mut st, &mut k);
        assert!(st.flush(&mut k).is_empty());
        assert!(k.vifs.is_empty() && k.mfcs.is_empty());
        assert!(st.installed_vifs().is_empty() && st.installed_mfcs().is_empty());
        assert!(st.route(a).is_some());
        // And everything comes back on the next apply (for example on a new router).
        converge(&mut st, &mut k);
        assert_eq!(k.mfcs.len(), 1);
    }

    #[test]
    fn wrong_family_is_rejected() {
        let mut st = ForwardingState::new(Family::V4);
        let six = sg("2001:db8::1", "ff3e::1");
        assert!(matches!(st.set_route(six, "native", ["d"]), Err(Error::FamilyMismatch { .. })));
        assert!(st.add_oif(six, "native", "d").is_err());
        let mut st6 = ForwardingState::new(Family::V6);
        st6.set_route(six, "native", ["d"]).unwrap();
        let mixed = SourceGroup { source: "2001:db8::1".parse().unwrap(), group: "232.1.1.1".parse().unwrap() };
        assert!(st6.set_route(mixed, "native", ["d"]).is_err());
    }

    #[test]
    fn op_display() {
        let a = sg("192.0.2.1", "232.1.1.1");
        assert_eq!(set(a, 2, &[0, 1]).to_string(), "set mfc (192.0.2.1,232.1.1.1) iif vif2 oifs [vif0 vif1]");
        assert_eq!(add(1, "tun0", 7).to_string(), "add vif1 = tun0 (ifindex 7)");
    }
}
