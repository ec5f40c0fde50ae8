//! Durable consumer-group offsets: one small checksummed file per group.
//!
//! A commit updates memory, then rewrites the group's file (temp file, fsync, rename, fsync
//! directory), so a crash leaves either the old or the new file, never a mix. Concurrent
//! commits to one group share a rewrite: whoever takes the flush lock writes the latest
//! snapshot and everyone whose change it contains returns.
//!
//! ```text
//! file  = "OEGO" | version u32 = 1 | count u32 | entry * count | crc32c u32 (over all before)
//! entry = topic_len u16 | topic utf-8 | partition u32 | offset u64
//! ```

use crate::names;
use crate::segment::sync_dir;
use crate::{io_err, lock, LogError};
use crc::{Crc, Table, CRC_32_ISCSI};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 4] = b"OEGO";
const VERSION: u32 = 1;
const SUFFIX: &str = ".offsets";
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

type Map = BTreeMap<(String, u32), u64>;

struct Group {
    path: PathBuf,
    /// Current offsets and a version bumped by every change.
    state: Mutex<(Map, u64)>,
    /// Version last written to disk; the lock serialises rewrites.
    flushed: tokio::sync::Mutex<u64>,
}

pub(crate) struct Offsets {
    dir: PathBuf,
    fsync: bool,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

impl Offsets {
    /// Load every group file in `dir` (blocking).
    pub(crate) fn load(dir: PathBuf, fsync: bool) -> Result<Offsets, LogError> {
        let mut groups = HashMap::new();
        let entries =
            std::fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
            let path = entry.path();
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if file_name.ends_with(".tmp") {
                // An interrupted rewrite; the previous file is still intact.
                std::fs::remove_file(&path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
                continue;
            }
            let Some(group) = file_name.strip_suffix(SUFFIX).and_then(names::decode) else {
                continue;
            };
            let data =
                std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let map = decode(&data).map_err(|reason| LogError::Corrupt {
                path: path.clone(),
                position: 0,
                reason: reason.into(),
            })?;
            groups.insert(
                group,
                Arc::new(Group {
                    path,
                    state: Mutex::new((map, 0)),
                    flushed: tokio::sync::Mutex::new(0),
                }),
            );
        }
        Ok(Offsets {
            dir,
            fsync,
            groups: Mutex::new(groups),
        })
    }

    fn group(&self, name: &str) -> Result<Arc<Group>, LogError> {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get(name) {
            return Ok(g.clone());
        }
        let path = self.dir.join(format!("{}{SUFFIX}", names::encode(name)?));
        let g = Arc::new(Group {
            path,
            state: Mutex::new((Map::new(), 0)),
            flushed: tokio::sync::Mutex::new(0),
        });
        groups.insert(name.to_owned(), g.clone());
        Ok(g)
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        let g = lock(&self.groups).get(group).cloned()?;
        let st = lock(&g.state);
        st.0.get(&(topic.to_owned(), partition)).copied()
    }

    pub(crate) async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        names::encode(topic)?;
        let g = self.group(group)?;
        let version = {
            let mut st = lock(&g.state);
            st.0.insert((topic.to_owned(), partition), offset);
            st.1 += 1;
            st.1
        };
        self.flush(&g, version).await
    }

    /// Forget every offset of `topic` in every group.
    pub(crate) async fn remove_topic(&self, topic: &str) -> Result<(), LogError> {
        let groups: Vec<Arc<Group>> = lock(&self.groups).values().cloned().collect();
        for g in groups {
            let version = {
                let mut st = lock(&g.state);
                let before = st.0.len();
                st.0.retain(|(t, _), _| t != topic);
                if st.0.len() == before {
                    continue;
                }
                st.1 += 1;
                st.1
            };
            self.flush(&g, version).await?;
        }
        Ok(())
    }

    /// Make sure a snapshot at least as new as `version` is on disk.
    async fn flush(&self, g: &Arc<Group>, version: u64) -> Result<(), LogError> {
        let mut flushed = g.flushed.lock().await;
        if *flushed >= version {
            return Ok(());
        }
        let (data, snapshot_version) = {
            let st = lock(&g.state);
            (encode(&st.0), st.1)
        };
        let path = g.path.clone();
        let dir = self.dir.clone();
        let fsync = self.fsync;
        tokio::task::spawn_blocking(move || write_atomic(&dir, &path, &data, fsync))
            .await
            .map_err(|e| LogError::Io {
                context: "writing consumer offsets".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        *flushed = snapshot_version;
        Ok(())
    }
}

fn write_atomic(dir: &Path, path: &Path, data: &[u8], fsync: bool) -> Result<(), LogError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let ctx = || format!("writing {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(io_err(ctx()))?;
    f.write_all(data).map_err(io_err(ctx()))?;
    if fsync {
        f.sync_all().map_err(io_err(ctx()))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

fn encode(map: &Map) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + map.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for ((topic, partition), offset) in map {
        // Topic names are validated to at most names::MAX_LEN bytes, far below u16::MAX.
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&partition.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(data: &[u8]) -> Result<Map, &'static str> {
    if data.len() < 16 {
        return Err("offsets file too short");
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if CRC32C.checksum(body).to_le_bytes() != crc {
        return Err("offsets file checksum mismatch");
    }
    if &body[..4] != MAGIC {
        return Err("offsets file has a bad magic number");
    }
    let mut r = Cursor { buf: body, pos: 4 };
    if r.u32()? != VERSION {
        return Err("unsupported offsets file version");
    }
    let count = r.u32()?;
    let mut map = Map::new();
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let topic = std::str::from_utf8(r.take(len)?).map_err(|_| "topic is not utf-8")?;
        let partition = r.u32()?;
        let offset = r.u64()?;
        map.insert((topic.to_owned(), partition), offset);
    }
    if r.pos != body.len() {
        return Err("trailing bytes in offsets file");
    }
    Ok(map)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("offsets file truncated")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or("offsets file truncated")?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_and_detects_corruption() {
        let mut map = Map::new();
        map.insert(("chan-a".into(), 0), 17);
        map.insert(("chan/b".into(), 3), u64::MAX);
        let data = encode(&map);
        assert_eq!(decode(&data), Ok(map));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        assert!(decode(&data[..data.len() - 1]).is_err());
    }
}
