//! Atomic, change-only joinfile writing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mcast_wire::SourceGroup;

use crate::parse::format;

/// Replaces `path` with `contents` atomically: a reader sees either the old file or the new
/// one, never an empty or partial file, even if this process is killed mid-write or the disk
/// fills up (then the old file stays and the error is returned).
///
/// The temporary file lives in the same directory (a rename cannot cross file systems), is
/// flushed to disk before the rename, and the directory is synced afterwards so the rename
/// itself survives a crash.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        // The umask may have narrowed the mode given to open(); readers in the joinfile group need
        // exactly `mode`.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a joinfile only when its content changes.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    mode: u32,
    /// What the file holds now, as far as we know: the last content we wrote, or what we found
    /// at start.
    current: Option<String>,
    /// The file as we last saw it holding `current` (device, inode, size, mtime, ctime): when
    /// it still looks like that, [`Writer::repair`] needs no read.
    stamp: Option<Stamp>,
}

type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path).ok().filter(fs::Metadata::is_file)?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

impl Writer {
    /// A writer for `path` with file mode `mode` (e.g. 0o644, or 0o640 with a shared group).
    /// The current content is read so that an unchanged set is not rewritten after a restart.
    pub fn new(path: impl Into<PathBuf>, mode: u32) -> Writer {
        let path = path.into();
        let current = fs::read_to_string(&path).ok();
        let stamp = current.as_ref().and_then(|_| stamp_of(&path));
        Writer { path, mode, current, stamp }
    }

    /// The path written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `entries` if they differ from what the file holds. Returns whether it wrote.
    /// On error the file is unchanged and the next call tries again.
    pub fn write_if_changed<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a SourceGroup, &'a Option<u32>)>,
    ) -> io::Result<bool> {
        let text = format(entries);
        if self.current.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        write_atomic(&self.path, text.as_bytes(), self.mode)?;
        self.current = Some(text);
        self.stamp = stamp_of(&self.path);
        Ok(true)
    }

    /// Puts back what was last written if the file no longer holds it: someone truncated it,
    /// wrote over it, replaced it with garbage or removed it (a reader such as driad-ingest
    /// would otherwise act on that until the set changes). One `stat` when nothing changed.
    /// Returns whether it rewrote the file; an error (the path is now a directory, the disk is
    /// full) leaves things as they are, for the next call to try again.
    pub fn repair(&mut self) -> io::Result<bool> {
        let Some(text) = &self.current else { return Ok(false) };
        let stamp = stamp_of(&self.path);
        if stamp.is_some() && stamp == self.stamp {
            return Ok(false);
        }
        if stamp.is_some() && fs::read(&self.path).is_ok_and(|bytes| bytes == text.as_bytes()) {
            self.stamp = stamp;
            return Ok(false);
        }
        write_atomic(&self.path, text.as_bytes(), self.mode)?;
        self.stamp = stamp_of(&self.path);
        Ok(true)
    }

    /// Writes a set of (S,G)s without populations (pimwatch's and driad-ingest's form).
    pub fn write_sgs_if_changed(&mut self, sgs: impl IntoIterator<Item = SourceGroup>) -> io::Result<bool> {
        let map: BTreeMap<SourceGroup, Option<u32>> = sgs.into_iter().map(|sg| (sg, None)).collect();
        self.write_if_changed(&map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sg(text: &str) -> SourceGroup {
        text.parse().unwrap()
    }

    #[test]
    fn writes_only_on_change_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pimwatch.sgs");
        let mut writer = Writer::new(&path, 0o644);
        assert!(writer.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap());
        assert!(!writer.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "198.51.100.10,232.1.1.1\n");
        assert!(writer.write_sgs_if_changed([]).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["pimwatch.sgs"]);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_restarted_writer_does_not_rewrite_the_same_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        Writer::new(&path, 0o640).write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap();
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        let mut again = Writer::new(&path, 0o640);
        assert!(!again.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn repair_puts_back_what_was_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        let mut writer = Writer::new(&path, 0o640);
        assert!(!writer.repair().unwrap(), "nothing written yet: nothing to repair");
        writer.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap();
        assert!(!writer.repair().unwrap(), "intact");
        let good = fs::read_to_string(&path).unwrap();
        // Truncated in place, to nothing and to half a line.
        for damage in ["", "198.51.100.1"] {
            fs::write(&path, damage).unwrap();
            assert!(writer.repair().unwrap());
            assert_eq!(fs::read_to_string(&path).unwrap(), good);
        }
        // Garbage (10 MB), removed, replaced by a directory (not repairable until it goes).
        fs::write(&path, vec![b'x'; 10 << 20]).unwrap();
        assert!(writer.repair().unwrap());
        fs::remove_file(&path).unwrap();
        assert!(writer.repair().unwrap());
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "x").unwrap();
        assert!(writer.repair().is_err());
        fs::remove_dir_all(&path).unwrap();
        assert!(writer.repair().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), good);
        // Rewritten with the same content by someone else: nothing to do.
        fs::write(&path, &good).unwrap();
        assert!(!writer.repair().unwrap());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["j.sgs"]);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_restarted_writer_repairs_what_it_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        Writer::new(&path, 0o644).write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap();
        let mut again = Writer::new(&path, 0o644);
        fs::write(&path, "").unwrap();
        assert!(again.repair().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "198.51.100.10,232.1.1.1\n");
    }

    #[test]
    fn failure_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        let mut writer = Writer::new(&path, 0o644);
        writer.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap();
        // Make the rename impossible: the target becomes a non-empty directory.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "x").unwrap();
        assert!(writer.write_sgs_if_changed([sg("198.51.100.11,232.1.1.1")]).is_err());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["j.sgs"], "temporary file removed after the failure");
    }
}
