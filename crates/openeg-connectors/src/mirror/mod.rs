//! Pieces of Kafka-to-Kafka replication (event-router jobs) that need no broker: where a
//! copied record goes when the target topic has fewer partitions than the source.
//!
//! When the target topic has at least as many partitions as the source, a record keeps its
//! partition number: the source's order per partition is kept and consumer-group offsets can
//! be translated partition by partition. Otherwise it goes where a Kafka client's default partitioner
//! would put its key (murmur2, as the Java client and librdkafka's `murmur2` partitioner), so
//! the target keeps per-key order and consumers that rely on key placement keep working. A
//! keyless record goes to its source partition number modulo the target's count, which keeps
//! the order of each source partition's keyless records.
//!
//! The broker side (the producer that writes copies, the admin calls that create target
//! topics and read watermarks) is [`kafka`].

pub mod kafka;
pub mod redis;
pub mod rocketmq;

/// Kafka's murmur2 hash of `data` (seed `0x9747b28c`), as `Utils.murmur2` in the Java client.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The Java client hashes the length as an int: keys over 2 GiB cannot reach a broker.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Where the records of one source topic go in its target topic; decided once, when the job
/// starts, from both topics' partition counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    target_partitions: i32,
    same_number: bool,
}

impl Placement {
    /// Same numbers when the target has at least as many partitions as the source, else by key.
    pub fn new(source_partitions: i32, target_partitions: i32) -> Placement {
        let target_partitions = target_partitions.max(1);
        Placement {
            target_partitions,
            same_number: target_partitions >= source_partitions,
        }
    }

    /// Whether the records of `source_partition` keep its number (so that partition's
    /// offsets can be translated): false for every partition of a topic placed by key, and
    /// for a partition added to the source beyond the target's count.
    pub fn keeps_partition(&self, source_partition: i32) -> bool {
        self.same_number && (0..self.target_partitions).contains(&source_partition)
    }

    /// The target partition of a record of `source_partition` with `key`. A partition added
    /// to the source after the start, beyond the target's count, goes by key too.
    pub fn partition(&self, key: Option<&[u8]>, source_partition: i32) -> i32 {
        let n = self.target_partitions;
        if self.keeps_partition(source_partition) {
            return source_partition;
        }
        match key {
            // As the Java client: clear the sign bit, then take the remainder.
            Some(k) => ((murmur2(k) & 0x7fff_ffff) % n as u32) as i32,
            None => source_partition.rem_euclid(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The reference values of librdkafka's murmur2 unit test (Java client results).
        let cases: [(&str, u32); 11] = [
            ("kafka", 0xd067_cf64),
            ("giberish123456789", 0x8f55_2b0c),
            ("1234", 0x9fc9_7b14),
            ("234", 0xe7c0_09ca),
            ("34", 0x8739_30da),
            ("4", 0x5a4b_5ca1),
            ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
            ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
            ("eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
            ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
            ("", 0x106e_08d9),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()), want, "murmur2({key:?})");
        }
    }

    #[test]
    fn same_numbers_when_the_target_has_as_many_partitions() {
        let p = Placement::new(3, 3);
        assert!(p.keeps_partition(2));
        assert!(!p.keeps_partition(5));
        assert_eq!(p.partition(Some(b"kafka"), 2), 2);
        assert_eq!(p.partition(None, 0), 0);
        assert_eq!(Placement::new(2, 5).partition(Some(b"kafka"), 1), 1);
        // A source partition added later, beyond the target's count: by key.
        assert_eq!(p.partition(Some(b"kafka"), 5), 1);
    }

    #[test]
    fn by_key_hash_or_source_number_when_the_target_has_fewer() {
        let two = Placement::new(3, 2);
        assert!(!two.keeps_partition(0));
        // 0xd067cf64 & 0x7fffffff = 1348980580: % 2 = 0, whatever the source partition.
        assert_eq!(two.partition(Some(b"kafka"), 0), 0);
        assert_eq!(two.partition(Some(b"kafka"), 1), 0);
        // A sign-bit hash never gives a negative partition.
        let three = Placement::new(4, 3);
        assert_eq!(three.partition(Some(b"kafka"), 0), 1);
        for i in 0..200 {
            let got = three.partition(Some(format!("k-{i}").as_bytes()), 0);
            assert!((0..3).contains(&got), "{got}");
        }
        assert_eq!(three.partition(None, 7), 1);
        // A zero target count is treated as one partition.
        assert_eq!(Placement::new(1, 0).partition(Some(b"x"), 4), 0);
    }
}
