//! How a page shows its branding: the colours it computes (text on the primary colour that
//! stays readable), the theme, the logo and custom CSS (checked when set; see
//! [`latchkey_engine::branding`]).

use latchkey_engine::branding::{Branding, Theme, parse_color};
use serde::Serialize;

/// The primary colour when none is set: a blue that keeps white text readable (WCAG AA).
const DEFAULT_PRIMARY: &str = "#1f5ad1";

/// What the page template reads of a branding.
#[derive(Debug, Clone, Serialize)]
pub struct BrandView {
    /// The app's display name, shown above the card.
    pub name: Option<String>,
    /// The logo's `data:` URI.
    pub logo: Option<String>,
    /// The primary colour, `#rrggbb`.
    pub color: String,
    /// Text on the primary colour: black or white, whichever contrasts more.
    pub on_color: &'static str,
    /// `light`, `dark` or `system`.
    pub theme: &'static str,
    /// The custom CSS.
    pub css: Option<String>,
}

impl From<Branding> for BrandView {
    fn from(b: Branding) -> Self {
        let color = b
            .primary_color
            .filter(|c| parse_color(c).is_some())
            .unwrap_or_else(|| DEFAULT_PRIMARY.to_string());
        let on_color = parse_color(&color).map_or("#ffffff", on_color);
        Self {
            name: b.display_name,
            logo: b.logo,
            color,
            on_color,
            theme: match b.theme.unwrap_or_default() {
                Theme::System => "system",
                Theme::Light => "light",
                Theme::Dark => "dark",
            },
            css: b.custom_css,
        }
    }
}

/// Black or white text on `rgb`, whichever has the higher contrast ratio (WCAG 2 relative
/// luminance): a hand-written line of arithmetic, not worth a colour crate.
fn on_color(rgb: [u8; 3]) -> &'static str {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let l = 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
    let with_white = 1.05 / (l + 0.05);
    let with_black = (l + 0.05) / 0.05;
    if with_white >= with_black { "#ffffff" } else { "#000000" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_on_the_primary_colour_stays_readable() {
        assert_eq!(on_color([0x1f, 0x5a, 0xd1]), "#ffffff");
        assert_eq!(on_color([0xff, 0xd7, 0x00]), "#000000", "yellow takes black");
        assert_eq!(on_color([0, 0, 0]), "#ffffff");
        let view = BrandView::from(Branding::default());
        assert_eq!(
            (view.color.as_str(), view.on_color, view.theme),
            (DEFAULT_PRIMARY, "#ffffff", "system")
        );
    }
}
