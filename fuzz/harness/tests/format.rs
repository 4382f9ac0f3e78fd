//! The byte format: `decode(encode(p)) == p` for every program the decoder produces, and the
//! seed programs survive the round trip.

use hakmem_fuzz::rng::Rng;
use hakmem_fuzz::{decode, encode, seed_sets, Flavor};

#[test]
fn decode_of_encode_is_identity_on_random_inputs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = [0usize; 2];
    for i in 0..20_000 {
        let len = 1 + (rng.next_u64() % 160) as usize;
        let mut data = rng.bytes(len);
        let flavor = if i % 2 == 0 { Flavor::Plain } else { Flavor::Misuse };
        if flavor == Flavor::Misuse && i % 4 == 1 {
            // Most random misuse inputs hold zero or several misuses; plant one to get through.
            let at = (rng.next_u64() as usize % len) | 1;
            if at < len {
                data[at] = 0xf0 + (rng.next_u64() % 5) as u8;
            }
        }
        let Ok(p) = decode(&data, flavor) else { continue };
        accepted[(flavor == Flavor::Misuse) as usize] += 1;
        let bytes = encode(&p).unwrap_or_else(|r| panic!("accepted program does not encode ({}):\n{p}", r.0));
        let again = decode(&bytes, flavor).unwrap_or_else(|r| panic!("encoding rejected ({}):\n{p}", r.0));
        assert_eq!(again, p, "round trip changed the program");
        // The encoding is canonical: encoding again gives the same bytes.
        assert_eq!(encode(&again).unwrap(), bytes);
        // The listing reads back as the same program.
        assert_eq!(p.to_string().parse::<hakmem_fuzz::Program>(), Ok(p.clone()), "listing:\n{p}");
    }
    // The property means little unless the decoder accepts a fair share of random inputs.
    assert!(accepted[0] > 1_000, "only {} plain programs accepted", accepted[0]);
    assert!(accepted[1] > 100, "only {} misuse programs accepted", accepted[1]);
}

#[test]
fn seeds_round_trip() {
    for (target, progs) in seed_sets() {
        for (name, p) in progs {
            let bytes = encode(&p).unwrap_or_else(|r| panic!("{target}/{name}: {}", r.0));
            let flavor = hakmem_fuzz::flavor_of(target);
            assert_eq!(decode(&bytes, flavor), Ok(p), "{target}/{name}");
        }
    }
}

#[test]
fn nonsense_is_rejected() {
    // Empty program (three header bytes, no step).
    assert!(decode(&[], Flavor::Plain).is_err());
    assert!(decode(&[3, 0, 0], Flavor::Plain).is_err());
    // A free (kind 28) on a thread that holds nothing.
    assert!(decode(&[0, 0, 0, 0, 28, 0], Flavor::Plain).is_err());
    // A misuse program without its misuse.
    assert!(decode(&[0, 0, 0, 0, 0, 0, 8, 0, 3], Flavor::Misuse).is_err());
    // A schedule prefix with no step after it, and two of one kind.
    assert!(decode(&[0, 0, 0, 0, 0, 0, 8, 0, 3, 5, 0xe0], Flavor::Plain).is_err());
    assert!(decode(&[0, 0, 0, 5, 0xe0, 6, 0xe0, 0, 0, 0, 8, 0, 3], Flavor::Plain).is_err());
    assert!(decode(&[0, 0, 0, 5, 0xe0, 6, 0xe1, 0, 0, 0, 8, 0, 3], Flavor::Plain).is_ok());
}
