//! Size classes: which slot size serves a request.
//!
//! Tiny classes (up to 1 KiB) are spaced 16 bytes apart up to 128 B and four per doubling above,
//! which bounds internal waste at 20% instead of the 50% of the C design's power-of-two classes.
//! Mid classes (up to 32 KiB) keep four per doubling up to 16 KiB, each a multiple of 256. Above
//! 16 KiB only 21760 (three slots per 64 KiB unit) and 32768 (two) remain, since finer classes
//! would leave most of a unit unused. (Classes above 4 KiB take 1 MiB spans where they can, see
//! `layout`; the classes stay those of a unit, which a heap limited to a few units per region
//! still uses.)

/// Slot size of each class, ascending.
pub const CLASS_SIZES: [usize; NUM_CLASSES] = [
    8, 16, 32, 48, 64, 80, 96, 112, 128, // tiny, 16-byte steps
    160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, // tiny, 4 per doubling
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, // mid
    5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 21760, 32768,
];

/// Number of size classes.
pub const NUM_CLASSES: usize = 39;
/// Largest request served by the tiny tier.
pub const TINY_MAX: usize = 1024;
/// Largest request served from slabs; anything larger is mapped on its own.
pub const SMALL_MAX: usize = 32768;
/// Largest alignment a slab slot can honour (slab 0 starts on a page boundary only).
pub const SMALL_ALIGN_MAX: usize = crate::os::PAGE;

// Every class but the 8-byte one is a multiple of 16, so any request of 9 bytes or more lands in a
// 16-byte-aligned slot: this is what lets malloc use the plain table lookup.
const _: () = {
    let mut i = 1;
    while i < NUM_CLASSES {
        assert!(CLASS_SIZES[i] % 16 == 0);
        assert!(CLASS_SIZES[i] > CLASS_SIZES[i - 1]);
        i += 1;
    }
    assert!(CLASS_SIZES[NUM_CLASSES - 1] == SMALL_MAX);
};

const fn smallest_class_at_least(size: usize) -> u8 {
    let mut c = 0;
    while CLASS_SIZES[c] < size {
        c += 1;
    }
    c as u8
}

/// Entry `i` is the class of a request of `i * STEP` bytes, and of at least `smallest`.
const fn class_table<const N: usize, const STEP: usize>(smallest: usize) -> [u8; N] {
    let mut t = [0u8; N];
    let mut i = 0;
    while i < N {
        let size = i * STEP;
        t[i] = smallest_class_at_least(if size < smallest { smallest } else { size });
        i += 1;
    }
    t
}

/// The class of every size up to `SMALL_MAX` in 8-byte steps, indexed by `(size + 7) / 8`: one
/// load and no branch between the tiny and the mid classes. (With sizes mixed at random, as in
/// glibc's bench-malloc-thread, that branch was mispredicted on nearly half of the calls; 4 KiB
/// of table of which a program touches only the lines of the sizes it uses.)
static SMALL_INDEX: [u8; SMALL_MAX / 8 + 1] = class_table::<{ SMALL_MAX / 8 + 1 }, 8>(0);

/// [`SMALL_INDEX`] for malloc in 16-byte steps, indexed by `(size + 15) / 16`: sizes up to 8
/// bytes get the 16-byte class (every larger class is a multiple of 16), so every malloc block
/// is 16-byte aligned with no extra compare.
static MALLOC_INDEX: [u8; SMALL_MAX / 16 + 1] = class_table::<{ SMALL_MAX / 16 + 1 }, 16>(16);

/// Class for a malloc request whose slot needs at most `SMALL_MAX` bytes: 16-byte aligned.
#[inline(always)]
pub fn malloc_class(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    // FAULT fault-malloc-mid-rounds-down (new): above the tiny classes the size is rounded
    // down, so a request just above a class's size gets that class's slot, too small for it
    // (C's malloc only).
    let i = if cfg!(feature = "fault-malloc-mid-rounds-down") && size > TINY_MAX { size >> 4 } else { (size + 15) >> 4 };
    // SAFETY: size <= SMALL_MAX keeps the index within the table.
    unsafe { *MALLOC_INDEX.get_unchecked(i) as usize }
}

/// Class for a request whose slot needs at most `SMALL_MAX` bytes with alignment at most 8;
/// the fast path.
#[inline(always)]
pub fn small_class(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    // SAFETY: size <= SMALL_MAX keeps the index within the table.
    unsafe { *SMALL_INDEX.get_unchecked((size + 7) >> 3) as usize }
}

/// Smallest class whose slots hold `size` bytes, or `None` if the request is large.
#[inline]
pub fn class_of(size: usize) -> Option<usize> {
    (size <= SMALL_MAX).then(|| small_class(size))
}

/// Smallest class whose slots hold `size` bytes at alignment `align` (a power of two).
///
/// Slots of a class lie at `slab_start + i * slot_size` with `slab_start` page aligned, so every
/// slot is `align`-aligned exactly when the slot size is a multiple of `align`.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if align > SMALL_ALIGN_MAX {
        return None;
    }
    let mut c = class_of(size)?;
    // (A mask, not `%`: `align` is a power of two, and a division costs tens of cycles.)
    while CLASS_SIZES[c] & (align - 1) != 0 {
        c += 1;
        if c == NUM_CLASSES {
            return None;
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_fitting_class() {
        for size in 0..=SMALL_MAX {
            let c = class_of(size).unwrap();
            assert!(CLASS_SIZES[c] >= size, "size {size} class {c}");
            if c > 0 {
                assert!(CLASS_SIZES[c - 1] < size, "size {size} could use class {}", c - 1);
            }
        }
        assert_eq!(class_of(SMALL_MAX + 1), None);
    }

    #[test]
    fn malloc_gets_the_smallest_16_byte_aligned_class() {
        for size in 0..=SMALL_MAX {
            let c = malloc_class(size);
            assert_eq!(Some(c), class_for(size, 16), "size {size}");
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for shift in 0..=12 {
            let align = 1usize << shift;
            for size in (0..=SMALL_MAX).step_by(97) {
                if let Some(c) = class_for(size, align) {
                    assert_eq!(CLASS_SIZES[c] % align, 0);
                    assert!(CLASS_SIZES[c] >= size);
                }
            }
        }
        assert_eq!(class_for(8, 16), Some(1));
        assert_eq!(class_for(1, 8192), None);
    }

    #[test]
    fn waste_is_bounded() {
        // Up to 128 B the steps are 16 bytes; up to 16 KiB, four classes per doubling keep waste
        // under 20%; above, a 64 KiB slab holds only three or two slots, so waste reaches 34%.
        for size in 1..=SMALL_MAX {
            let slot = CLASS_SIZES[class_of(size).unwrap()];
            if size <= 128 {
                assert!(slot - size < 16, "size {size} slot {slot}");
            } else if size <= 16384 {
                assert!((slot - size) * 5 < slot, "size {size} slot {slot}");
            } else {
                assert!((slot - size) * 100 < slot * 34, "size {size} slot {slot}");
            }
        }
    }
}
