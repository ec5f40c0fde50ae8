//! Where an event sits in its channel's log, as one number.
//!
//! Trace rows and deliveries name an event by `(project, channel, log offset)`. A channel's
//! log may have several partitions (a Kafka log has one per share of the channel's traffic),
//! so the stored "log offset" is a *position*: the partition in the high bits, the
//! partition's own offset in the low 48. Stores keep positions as signed 64-bit integers, so
//! partitions stop at 2^15. Partition 0 is the identity (position = offset), so
//! the embedded log's one partition keeps the numbers it always stored.
//!
//! 2^48 offsets per partition is about 281 × 10^12 events: a partition at a million events a
//! second takes nine years to get there. An offset beyond it is refused where it is read
//! (`router::read`), never silently folded into another partition's positions.

/// Bits of a position that hold the partition's offset.
pub const OFFSET_BITS: u32 = 48;
/// The largest offset a position can hold.
pub const MAX_OFFSET: u64 = (1 << OFFSET_BITS) - 1;
/// Partitions a channel's log may have: every position then fits an `i64` (the stores'
/// column type).
pub const MAX_PARTITIONS: u32 = 1 << (63 - OFFSET_BITS);

/// The position of `offset` in `partition`, or `None` if either is out of range.
pub fn position(partition: u32, offset: u64) -> Option<u64> {
    (partition < MAX_PARTITIONS && offset <= MAX_OFFSET)
        .then(|| (u64::from(partition) << OFFSET_BITS) | offset)
}

/// The partition and offset of a position.
pub fn split(position: u64) -> (u32, u64) {
    ((position >> OFFSET_BITS) as u32, position & MAX_OFFSET)
}

/// The partition of a channel's log an event goes to: its CloudEvents `partitionkey`
/// extension when it has one, else its id, hashed (FNV-1a, 64 bit: stable across versions
/// and processes, so one key always lands in one partition and keeps its order). One
/// partition: always 0, nothing hashed.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_zero_is_the_identity() {
        for o in [0, 1, 12_345, MAX_OFFSET] {
            assert_eq!(position(0, o), Some(o));
            assert_eq!(split(o), (0, o));
        }
    }

    #[test]
    fn round_trips_and_bounds() {
        for (p, o) in [
            (1, 0),
            (2, 7),
            (MAX_PARTITIONS - 1, MAX_OFFSET),
            (3, 1 << 40),
        ] {
            let pos = position(p, o).unwrap();
            assert_eq!(split(pos), (p, o));
        }
        assert_eq!(position(0, MAX_OFFSET + 1), None);
        assert_eq!(position(MAX_PARTITIONS, 0), None);
        // Positions order by partition first: one partition's range never overlaps another's.
        assert!(position(1, 0).unwrap() > position(0, MAX_OFFSET).unwrap());
        // Stored as i64 in the delivery tables: every position fits.
        assert!(i64::try_from(position(MAX_PARTITIONS - 1, MAX_OFFSET).unwrap()).is_ok());
    }

    #[test]
    fn keys_spread_and_stay_put() {
        assert_eq!(partition_for(b"anything", 1), 0);
        assert_eq!(partition_for(b"anything", 0), 0);
        let mut seen = [0u32; 3];
        for i in 0..3000 {
            let k = format!("event-{i}");
            let p = partition_for(k.as_bytes(), 3);
            assert_eq!(p, partition_for(k.as_bytes(), 3), "stable");
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 800), "{seen:?}");
        // A fixed value: the hash must not change between versions (events of one key would
        // change partition, and lose their order, across an upgrade).
        assert_eq!(partition_for(b"", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as u32);
    }
}
