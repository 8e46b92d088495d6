//! The ReconGAN generator shipped inside the binary.
//!
//! The weights (`assets/recongan/generator.safetensors`) and their card
//! (`assets/recongan/generator.json`) were trained on the human trabecular micro-CT sample of
//! `../shared/data/microct` (downsampled ×2 to 0.039 mm, see the card's `training` record) and
//! are embedded with `include_bytes!`, so the app and the command line work from any
//! directory without the asset folder. The network is the 3-D DCGAN generator of Radford,
//! Metz & Chintala 2016 (ICLR, arXiv:1511.06434); see [`super::generator`].

use std::path::Path;

use super::{GanError, Generator, GeneratorCard};

/// Where the embedded weights came from (named in errors and in [`Generator::origin`]).
pub const BUILTIN_WEIGHTS_ORIGIN: &str = "built-in assets/recongan/generator.safetensors";
/// Where the embedded card came from (named in errors).
pub const BUILTIN_CARD_ORIGIN: &str = "built-in assets/recongan/generator.json";

const WEIGHTS: &[u8] = include_bytes!("../../assets/recongan/generator.safetensors");
const CARD: &str = include_str!("../../assets/recongan/generator.json");

/// The card of the built-in generator (architecture, voxel size, mean BV/TV of the training
/// cubes). Cheap: parses a few hundred bytes of JSON.
pub fn builtin_card() -> Result<GeneratorCard, GanError> {
    GeneratorCard::from_json(CARD, Path::new(BUILTIN_CARD_ORIGIN))
}

/// The built-in generator with its card. Repacks the embedded weights (a few MB), so callers
/// that generate repeatedly should keep the result.
pub fn builtin() -> Result<Generator, GanError> {
    let card = builtin_card()?;
    Generator::from_safetensors_bytes(WEIGHTS, card.architecture, BUILTIN_WEIGHTS_ORIGIN)?
        .with_card(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded generator loads with its card and turns seed 0 into a `size³` cube whose
    /// BV/TV after smoothing, thresholding and island removal
    /// ([`Generator::generate_mask`]) is the card's mean within 0.5 percentage points.
    #[test]
    fn builtin_generator_makes_a_cube_at_the_card_bv_tv() {
        let generator = builtin().expect("the embedded weights and card are valid");
        let card = generator.card().clone();
        let size = card.architecture.size;
        assert_eq!(generator.origin(), BUILTIN_WEIGHTS_ORIGIN);
        assert!(card.voxel_size_mm > 0.0 && card.bv_tv_mean > 0.0 && card.bv_tv_mean < 1.0);
        let field = generator.generate(0, 0);
        assert_eq!(field.len(), size * size * size);
        assert!(field.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        let mask = generator.generate_mask(0, 0, card.bv_tv_mean).unwrap();
        assert_eq!(mask.dims().as_array(), [size; 3]);
        let bv_tv = mask.bv_tv();
        assert!(
            (bv_tv - card.bv_tv_mean).abs() <= 0.005,
            "BV/TV {bv_tv:.4} vs card mean {:.4}",
            card.bv_tv_mean
        );
        assert_eq!(builtin_card().unwrap(), card);
    }
}
