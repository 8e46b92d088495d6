//! The two microstructures the runner keeps side by side: the real one (micro-CT or any
//! loaded volume) and the generated one (ReconGAN, or the synthetic test structure).

/// Which of the two held microstructures a job or a result concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MicroSlot {
    /// A volume read from disk: the real micro-CT sub-volume by default, or any loaded file.
    Real,
    /// A generated structure: ReconGAN by default, or the synthetic test structure.
    Generated,
}

impl MicroSlot {
    /// Both slots, real first (the order of the panel's columns and of the 3-D view).
    pub const ALL: [MicroSlot; 2] = [MicroSlot::Real, MicroSlot::Generated];

    pub fn label(self) -> &'static str {
        match self {
            MicroSlot::Real => "real",
            MicroSlot::Generated => "generated",
        }
    }
}

/// One value per [`MicroSlot`], indexed by slot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerSlot<T> {
    pub real: T,
    pub generated: T,
}

impl<T> PerSlot<T> {
    pub fn get(&self, slot: MicroSlot) -> &T {
        match slot {
            MicroSlot::Real => &self.real,
            MicroSlot::Generated => &self.generated,
        }
    }

    pub fn get_mut(&mut self, slot: MicroSlot) -> &mut T {
        match slot {
            MicroSlot::Real => &mut self.real,
            MicroSlot::Generated => &mut self.generated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_slot_indexing_matches_the_slot_order() {
        let mut v = PerSlot {
            real: 1,
            generated: 2,
        };
        *v.get_mut(MicroSlot::Generated) += 10;
        let seen: Vec<i32> = MicroSlot::ALL.iter().map(|s| *v.get(*s)).collect();
        assert_eq!(seen, [1, 12]);
    }
}
