//! Watching a joinfile for changes with inotify.
//!
//! The directory is watched, not the file: writers replace the file by renaming a temporary
//! file over it, which a watch on the file itself would lose. Only events for the exact file
//! name count (the original matched a suffix, so `xpimwatch.sgs` triggered it too), and only
//! completed writes (`IN_CLOSE_WRITE`), renames onto the name (`IN_MOVED_TO`) and removals:
//! never `IN_MODIFY` or `IN_CREATE`, which fire while a non-atomic writer is half done.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use inotify::{EventMask, EventStream, Inotify, WatchMask};
use tracing::{debug, warn};

use crate::{DEFAULT_MAX_BYTES, Joinfile, ParseOptions, ReadError, read};

/// How a [`Watcher`] reads.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// Accept the population column.
    pub parse: ParseOptions,
    /// Larger files are rejected as a whole.
    pub max_bytes: u64,
    /// Re-read this often even without an event: a safety net for inotify queue overflows and
    /// for directories that appear after start.
    pub rescan: Duration,
    /// When a file that existed vanishes, read again after this long before reporting it
    /// missing (an empty set): someone replacing it by removing it first (`rm` then a new file
    /// or a directory) is not taken for "nothing wanted" in between.
    pub missing_grace: Duration,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            parse: ParseOptions::default(),
            max_bytes: DEFAULT_MAX_BYTES,
            rescan: Duration::from_secs(30),
            missing_grace: Duration::from_millis(100),
        }
    }
}

/// Watches one joinfile.
pub struct Watcher {
    path: PathBuf,
    dir: PathBuf,
    name: OsString,
    options: WatcherOptions,
    stream: Option<EventStream<Vec<u8>>>,
    /// The file existed at the last read of `next_change`.
    existed: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("path", &self.path).field("watching", &self.stream.is_some()).finish()
    }
}

impl Watcher {
    /// Starts watching `path`. Never fails: if the directory does not exist yet, the watch is
    /// set up when it appears (checked at every rescan).
    pub fn new(path: impl Into<PathBuf>, options: WatcherOptions) -> Watcher {
        let path = path.into();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        let existed = path.exists();
        let mut watcher = Watcher { path, dir, name, options, stream: None, existed };
        watcher.ensure_watch();
        watcher
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file now.
    pub fn read(&self) -> Result<Joinfile, ReadError> {
        read(&self.path, &self.options.parse, self.options.max_bytes)
    }

    fn ensure_watch(&mut self) {
        if self.stream.is_some() {
            return;
        }
        let setup = || -> std::io::Result<EventStream<Vec<u8>>> {
            let inotify = Inotify::init()?;
            inotify.watches().add(
                &self.dir,
                WatchMask::CLOSE_WRITE
                    | WatchMask::MOVED_TO
                    | WatchMask::MOVED_FROM
                    | WatchMask::DELETE
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF
                    | WatchMask::ONLYDIR,
            )?;
            inotify.into_event_stream(vec![0u8; 16 * 1024])
        };
        match setup() {
            Ok(stream) => {
                debug!(dir = %self.dir.display(), "watching joinfile directory");
                self.stream = Some(stream);
            }
            Err(e) => warn!(dir = %self.dir.display(), error = %e, "cannot watch joinfile directory; will retry"),
        }
    }

    /// Whether an event concerns our file (or invalidates the watch).
    fn relevant(&mut self, mask: EventMask, name: Option<&OsString>) -> bool {
        if mask.intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            // The directory went away or moved: the watch is dead; set it up again later.
            self.stream = None;
            return true;
        }
        if mask.contains(EventMask::Q_OVERFLOW) {
            return true;
        }
        name.is_some_and(|n| *n == self.name)
    }

    /// Waits until the file may have changed (or the rescan interval passed) and returns a
    /// fresh read. Bursts of events are coalesced into one read.
    pub async fn next_change(&mut self) -> Result<Joinfile, ReadError> {
        let rescan = tokio::time::sleep(self.options.rescan);
        tokio::pin!(rescan);
        loop {
            self.ensure_watch();
            let Some(stream) = self.stream.as_mut() else {
                // No watch possible (directory missing): poll at the rescan interval.
                rescan.as_mut().await;
                break;
            };
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(event)) => {
                        if self.relevant(event.mask, event.name.as_ref()) {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "inotify read failed; re-creating the watch");
                        self.stream = None;
                    }
                    None => self.stream = None,
                },
                () = &mut rescan => break,
            }
        }
        self.coalesce();
        let mut result = self.read();
        if matches!(result, Err(ReadError::Missing)) && self.existed && !self.options.missing_grace.is_zero() {
            tokio::time::sleep(self.options.missing_grace).await;
            self.coalesce();
            result = self.read();
            if matches!(result, Err(ReadError::Missing)) {
                debug!(path = %self.path.display(), "joinfile removed");
            }
        }
        self.existed = !matches!(result, Err(ReadError::Missing));
        result
    }

    /// Takes whatever events are already queued (one read covers them all).
    fn coalesce(&mut self) {
        while let Some(stream) = self.stream.as_mut() {
            match stream.next().now_or_never() {
                Some(Some(Ok(event))) => {
                    let _ = self.relevant(event.mask, event.name.as_ref());
                }
                Some(Some(Err(_))) | Some(None) => self.stream = None,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SourceGroup, Writer};
    use std::time::Instant;

    fn sg(text: &str) -> SourceGroup {
        text.parse().unwrap()
    }

    fn options() -> WatcherOptions {
        WatcherOptions { rescan: Duration::from_secs(3600), ..WatcherOptions::default() }
    }

    #[tokio::test]
    async fn sees_atomic_writes_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cbacc.sgs");
        let mut watcher = Watcher::new(&path, options());
        assert!(matches!(watcher.read(), Err(ReadError::Missing)));
        let mut writer = Writer::new(&path, 0o644);
        let started = Instant::now();
        let write = tokio::task::spawn_blocking(move || {
            writer.write_sgs_if_changed([sg("198.51.100.10,232.1.1.1")]).unwrap();
            writer
        });
        let joinfile = tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap().unwrap();
        assert_eq!(joinfile.sgs().collect::<Vec<_>>(), [sg("198.51.100.10,232.1.1.1")]);
        assert!(started.elapsed() < Duration::from_secs(1));
        write.await.unwrap();
    }

    #[tokio::test]
    async fn ignores_other_files_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pimwatch.sgs");
        let mut watcher = Watcher::new(&path, options());
        // Same suffix, different name: must not wake the watcher.
        std::fs::write(dir.path().join("xpimwatch.sgs"), "198.51.100.10,232.1.1.1\n").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), watcher.next_change()).await.is_err());
        std::fs::write(&path, "198.51.100.11,232.1.1.1\n").unwrap();
        let joinfile = tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap().unwrap();
        assert_eq!(joinfile.entries.len(), 1);
    }

    #[tokio::test]
    async fn reports_removal_and_replacement_by_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        std::fs::write(&path, "198.51.100.10,232.1.1.1\n").unwrap();
        let mut watcher = Watcher::new(&path, options());
        std::fs::remove_file(&path).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap();
        assert!(matches!(result, Err(ReadError::Missing)));
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(watcher.read(), Err(ReadError::NotAFile)));
    }

    #[tokio::test]
    async fn a_file_replaced_by_removing_it_first_is_not_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        std::fs::write(&path, "198.51.100.10,232.1.1.1\n").unwrap();
        let mut watcher = Watcher::new(&path, options());
        // `rm j.sgs && mkdir j.sgs`: the reader sees a directory (rejected as a whole, the
        // current set kept), never an empty set in between.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap();
        assert!(matches!(result, Err(ReadError::NotAFile)), "{result:?}");
        // A real removal is still reported, after the grace.
        std::fs::remove_dir(&path).unwrap();
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap();
        assert!(matches!(result, Err(ReadError::Missing)));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn rejects_garbage_and_oversized_files_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sgs");
        std::fs::write(&path, b"\x00\xff garbage\nmore garbage\n").unwrap();
        let watcher = Watcher::new(&path, WatcherOptions { max_bytes: 1024, ..options() });
        assert!(matches!(watcher.read(), Err(ReadError::NoValidEntries { .. })));
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        assert!(matches!(watcher.read(), Err(ReadError::TooLarge { size: 2048, limit: 1024 })));
        // An empty file is a valid empty set, not garbage.
        std::fs::write(&path, "").unwrap();
        assert!(watcher.read().unwrap().entries.is_empty());
    }

    #[tokio::test]
    async fn directory_created_later_is_picked_up_at_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("later");
        let path = sub.join("j.sgs");
        let mut watcher = Watcher::new(&path, WatcherOptions { rescan: Duration::from_millis(100), ..options() });
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(5), watcher.next_change()).await.unwrap(),
            Err(ReadError::Missing)
        ));
        std::fs::create_dir(&sub).unwrap();
        // The next call sets up the watch; a write after that is seen through inotify.
        let next = tokio::spawn(async move { (watcher.next_change().await, watcher) });
        tokio::time::sleep(Duration::from_millis(250)).await;
        std::fs::write(&path, "198.51.100.10,232.1.1.1\n").unwrap();
        let (result, _watcher) = tokio::time::timeout(Duration::from_secs(5), next).await.unwrap().unwrap();
        let result = match result {
            Ok(j) => j,
            // The rescan may have fired just before the write; the next one sees it.
            Err(ReadError::Missing) => Watcher::new(&path, options()).read().unwrap(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(result.entries.len(), 1);
    }
}
