//! Which input partition a user's events land on, computed as the producers compute it.
//!
//! State is kept per input partition: the engine of partition `p` holds the users whose events
//! arrive on `p`. Anything that builds that state without reading the topic (the backfill from
//! files) must therefore put each user where the producers' partitioner will send their
//! messages, or the live service would see the user on one partition and find their history on
//! another. Producers key activity by user id; the partition follows from the key's bytes and
//! the partitioner in use:
//!
//! * [`Partitioner::Murmur2`]: the Java client's default for keyed records
//!   (`toPositive(Utils.murmur2(key)) % partitions`) and librdkafka's `murmur2` /
//!   `murmur2_random`;
//! * [`Partitioner::Crc32`]: librdkafka's default `consistent_random` (and `consistent`): CRC-32
//!   of the key modulo the partition count;
//! * [`Partitioner::Fnv1a`]: librdkafka's `fnv1a` / `fnv1a_random` and Sarama's (Go)
//!   `NewHashPartitioner`: the absolute value of the 32-bit FNV-1a hash, modulo the count.
//!
//! The `_random` variants differ only for records without a key, which no user's events have.
//! The hashes follow librdkafka's `rdmurmur2.c`, `rdcrc32.h` and `rdfnv1a.c`; the unit tests
//! below check them against the vectors those files and Kafka's `UtilsTest` publish, and the
//! backfill test on a broker against where librdkafka actually delivers.

/// A producer partitioner for keyed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// Java clients' default; librdkafka `murmur2`, `murmur2_random`.
    Murmur2,
    /// librdkafka's default `consistent_random`, and `consistent`.
    Crc32,
    /// librdkafka `fnv1a`, `fnv1a_random`; Sarama's hash partitioner.
    Fnv1a,
}

impl Partitioner {
    /// The partition (`0..partitions`) a record keyed `key` goes to.
    ///
    /// # Panics
    ///
    /// If `partitions` is 0 (a topic has at least one partition).
    pub fn partition(self, key: &[u8], partitions: u32) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        let hash = match self {
            Partitioner::Murmur2 => murmur2(key) & 0x7fff_ffff,
            Partitioner::Crc32 => crc32(key),
            Partitioner::Fnv1a => fnv1a(key),
        };
        // Below `partitions`, which fits an i32 (Kafka's partition numbers are i32).
        i32::try_from(hash % partitions).unwrap_or(i32::MAX)
    }

    /// Every partitioner known here.
    pub const ALL: [Partitioner; 3] =
        [Partitioner::Murmur2, Partitioner::Crc32, Partitioner::Fnv1a];

    /// The name `--partitioner` takes (librdkafka's `partitioner` setting names these, or
    /// their `_random` variants, the same).
    pub fn name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2",
            Partitioner::Crc32 => "consistent_random",
            Partitioner::Fnv1a => "fnv1a",
        }
    }
}

/// MurmurHash2 as Kafka's `Utils.murmur2` computes it (seed `0x9747b28c`, little-endian words).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as an int; keys are far below 4 GiB.
    let mut h = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc32_table();
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc ^ 0xffff_ffff
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// FNV-1a (32 bit), made non-negative as librdkafka and Sarama do: the hash read as a signed
/// int, negated when negative (`i32::MIN` stays itself, as in both).
pub fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h as i32).wrapping_abs() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` and librdkafka's `unittest_murmur2` (signed results as
    /// Java prints them).
    #[test]
    fn murmur2_matches_kafka_and_librdkafka_vectors() {
        let kafka: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in kafka {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
        let unaligned = b"PreAmbleWillBeRemoved,ThePrePartThatIs";
        let librdkafka: [(&[u8], u32); 11] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (unaligned, 0x7842_4f1c),
            (&unaligned[1..], 0x4a62_b377),
            (&unaligned[2..], 0xe0e4_e09e),
            (&unaligned[3..], 0x62b8_b43f),
            (b"", 0x106e_08d9),
        ];
        for (key, expected) in librdkafka {
            assert_eq!(murmur2(key), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }

    /// librdkafka's `unittest_fnv1a` (its results come from Go's `hash/fnv`, as Sarama uses).
    #[test]
    fn fnv1a_matches_librdkafka_vectors() {
        let unaligned = b"PreAmbleWillBeRemoved,ThePrePartThatIs";
        let cases: [(&[u8], u32); 11] = [
            (b"kafka", 0x0d33_c4e1),
            (b"giberish123456789", 0x77a5_8295),
            (b"1234", 0x023b_dd03),
            (b"234", 0x2dea_3cd2),
            (b"34", 0x740f_a83e),
            (b"4", 0x310c_a263),
            (unaligned, 0x65cb_d69c),
            (&unaligned[1..], 0x6e49_c79a),
            (&unaligned[2..], 0x69ee_d356),
            (&unaligned[3..], 0x6abc_c023),
            (b"", 0x7ee3_623b),
        ];
        for (key, expected) in cases {
            assert_eq!(fnv1a(key), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }

    /// The CRC-32 check value and zlib results.
    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    /// Kafka's `Utils.murmur2`, line by line in Java's signed arithmetic.
    fn java_murmur2(data: &[u8]) -> i32 {
        let length = data.len() as i32;
        let m: i32 = 0x5bd1_e995;
        let mut h: i32 = 0x9747_b28cu32 as i32 ^ length;
        let at = |i: i32| i32::from(data[i as usize]);
        for i in 0..length / 4 {
            let i4 = i * 4;
            let mut k = at(i4)
                .wrapping_add(at(i4 + 1) << 8)
                .wrapping_add(at(i4 + 2) << 16)
                .wrapping_add(at(i4 + 3) << 24);
            k = k.wrapping_mul(m);
            k ^= ((k as u32) >> 24) as i32;
            k = k.wrapping_mul(m);
            h = h.wrapping_mul(m);
            h ^= k;
        }
        let base = length & !3;
        let rest = length % 4;
        if rest >= 3 {
            h ^= at(base + 2) << 16;
        }
        if rest >= 2 {
            h ^= at(base + 1) << 8;
        }
        if rest >= 1 {
            h ^= at(base);
            h = h.wrapping_mul(m);
        }
        h ^= ((h as u32) >> 13) as i32;
        h = h.wrapping_mul(m);
        h ^= ((h as u32) >> 15) as i32;
        h
    }

    proptest::proptest! {
        /// Any key (user ids are untrusted bytes) hashes like Kafka's Java code and lands on a
        /// partition of the topic, whatever its partition count.
        #[test]
        fn any_key_hashes_like_java_and_lands_in_range(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            partitions in 1u32..5000,
        ) {
            proptest::prop_assert_eq!(murmur2(&key) as i32, java_murmur2(&key));
            for p in [Partitioner::Murmur2, Partitioner::Crc32, Partitioner::Fnv1a] {
                let got = p.partition(&key, partitions);
                proptest::prop_assert!((0..partitions as i32).contains(&got));
            }
        }
    }

    #[test]
    fn partitions_are_the_hash_modulo_the_count() {
        // murmur2("kafka") = 0xd067cf64: the sign bit is dropped before the modulo.
        assert_eq!(
            Partitioner::Murmur2.partition(b"kafka", 7),
            (0x5067_cf64u32 % 7) as i32
        );
        assert_eq!(
            Partitioner::Crc32.partition(b"123456789", 10),
            (0xcbf4_3926u32 % 10) as i32
        );
        assert_eq!(
            Partitioner::Fnv1a.partition(b"kafka", 3),
            (0x0d33_c4e1u32 % 3) as i32
        );
        for p in [Partitioner::Murmur2, Partitioner::Crc32, Partitioner::Fnv1a] {
            assert_eq!(p.partition(b"any user", 1), 0);
            for n in 1..40u32 {
                let got = p.partition(format!("user-{n}").as_bytes(), n);
                assert!((0..n as i32).contains(&got), "{p:?} {n}: {got}");
            }
        }
    }
}
