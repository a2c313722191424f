//! The connect page's branding, per environment and per integration: a display name, a logo,
//! a primary colour, a theme and a little custom CSS. An integration's branding overrides its
//! environment's, field by field. Nothing in it can make the page load an external resource: a
//! logo is an inline `data:` image, and custom CSS with `url(`, `@import` or escapes is refused.

use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError, EnvironmentId, IntegrationId};

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 80;
/// The largest logo, as its `data:` URI, in bytes.
pub const MAX_LOGO_BYTES: usize = 64 * 1024;
/// The largest custom CSS, in bytes.
pub const MAX_CUSTOM_CSS_BYTES: usize = 8 * 1024;

/// The logo formats a page shows (`data:image/<type>;base64,…`).
const LOGO_TYPES: &[&str] = &["png", "jpeg", "gif", "webp", "svg+xml"];

/// What custom CSS may not hold: anything that fetches (`url(`, `@import`, `image-set(`,
/// `@font-face`, …), old script hooks (`expression(`, `behavior`, `-moz-binding`), escapes
/// that could spell those (`\`), and markup that could end the style element (`<`).
const CSS_FORBIDDEN: &[&str] = &[
    "url(",
    "@import",
    "image(",
    "image-set(",
    "cross-fade(",
    "element(",
    "src(",
    "@font-face",
    "@namespace",
    "expression(",
    "behavior",
    "-moz-binding",
    "javascript:",
    "\\",
    "<",
];

/// Light, dark, or as the end user's system says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    /// Follow the system (`prefers-color-scheme`).
    #[default]
    System,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

/// How the connect page looks for an environment or an integration. Every field is optional;
/// an integration's set fields win over its environment's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// The name the page shows for the app (at most 80 characters), e.g. `Acme CRM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The logo: a `data:image/{png,jpeg,gif,webp,svg+xml};base64,…` URI of at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// The primary colour (buttons, focus, links): `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// `light`, `dark` or `system` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<Theme>,
    /// CSS added after the page's own (at most 8 KiB): no `url(`, `@import`, `@font-face`,
    /// `image-set(`, `expression(`, backslash escapes or `<`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_css: Option<String>,
}

impl Branding {
    /// Refuses a field the page could not show safely, naming it.
    pub fn check(&self) -> Result<(), EngineError> {
        if let Some(name) = &self.display_name
            && (name.trim().is_empty()
                || name.chars().count() > MAX_DISPLAY_NAME
                || name.chars().any(char::is_control))
        {
            return Err(EngineError::invalid(
                "display_name",
                format!(
                    "display_name is 1 to {MAX_DISPLAY_NAME} characters, without control characters"
                ),
            ));
        }
        if let Some(logo) = &self.logo {
            check_logo(logo)?;
        }
        if let Some(color) = &self.primary_color
            && parse_color(color).is_none()
        {
            return Err(EngineError::invalid(
                "primary_color",
                "primary_color is #rrggbb, e.g. #0b5fff",
            ));
        }
        if let Some(css) = &self.custom_css {
            check_css(css)?;
        }
        Ok(())
    }

    /// This branding, its unset fields taken from `base`.
    pub fn over(self, base: Branding) -> Branding {
        Branding {
            display_name: self.display_name.or(base.display_name),
            logo: self.logo.or(base.logo),
            primary_color: self.primary_color.or(base.primary_color),
            theme: self.theme.or(base.theme),
            custom_css: self.custom_css.or(base.custom_css),
        }
    }
}

/// `#rrggbb` as its red, green and blue.
pub fn parse_color(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#').filter(|h| h.len() == 6)?;
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

fn check_logo(logo: &str) -> Result<(), EngineError> {
    let refuse = |m: String| Err(EngineError::invalid("logo", m));
    if logo.len() > MAX_LOGO_BYTES {
        return refuse(format!("logo is at most {} KiB", MAX_LOGO_BYTES / 1024));
    }
    let Some((kind, data)) = logo
        .strip_prefix("data:image/")
        .and_then(|rest| rest.split_once(";base64,"))
        .filter(|(kind, _)| LOGO_TYPES.contains(kind))
    else {
        return refuse(format!(
            "logo is a data: URI, data:image/{{{}}};base64,… (the page loads nothing from elsewhere)",
            LOGO_TYPES.join(",")
        ));
    };
    use base64::Engine as _;
    if data.is_empty() || base64::engine::general_purpose::STANDARD.decode(data).is_err() {
        return refuse(format!("logo's image/{kind} data is not base64"));
    }
    Ok(())
}

fn check_css(css: &str) -> Result<(), EngineError> {
    if css.len() > MAX_CUSTOM_CSS_BYTES {
        return Err(EngineError::invalid(
            "custom_css",
            format!("custom_css is at most {} KiB", MAX_CUSTOM_CSS_BYTES / 1024),
        ));
    }
    // Compared without case or whitespace, so `URL (` and `@IMPORT` are caught too.
    let folded: String =
        css.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    if let Some(found) = CSS_FORBIDDEN.iter().find(|f| folded.contains(*f)) {
        return Err(EngineError::invalid(
            "custom_css",
            format!("custom_css may not contain `{found}`: the page loads nothing from elsewhere"),
        ));
    }
    if css.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(EngineError::invalid("custom_css", "custom_css has control characters"));
    }
    Ok(())
}

/// The connect page's branding, from [`Engine::branding`].
#[derive(Debug, Clone, Copy)]
pub struct Brandings<'e> {
    pub(crate) engine: &'e Engine,
}

impl Brandings<'_> {
    /// The branding set on `environment` (`integration` `None`) or on one of its
    /// integrations, as set (not merged).
    pub async fn get(
        &self,
        environment: &EnvironmentId,
        integration: Option<&IntegrationId>,
    ) -> Result<Branding, EngineError> {
        self.owner_exists(environment, integration).await?;
        self.stored(environment.as_str(), integration.map(IntegrationId::as_str)).await
    }

    /// Sets (or, with the default, empty branding, clears) the branding of `environment` or of
    /// one of its integrations.
    pub async fn set(
        &self,
        environment: &EnvironmentId,
        integration: Option<&IntegrationId>,
        branding: Branding,
    ) -> Result<Branding, EngineError> {
        branding.check()?;
        self.owner_exists(environment, integration).await?;
        let value = (branding != Branding::default())
            .then(|| serde_json::to_value(&branding))
            .transpose()
            .map_err(|e| EngineError::Internal(format!("branding: {e}")))?;
        self.engine
            .store
            .put_branding(
                environment.as_str(),
                integration.map(IntegrationId::as_str),
                value.as_ref(),
            )
            .await?;
        Ok(branding)
    }

    /// What the connect page shows for `integration` of `environment`: its branding over its
    /// environment's.
    pub async fn effective(
        &self,
        environment: &str,
        integration: Option<&str>,
    ) -> Result<Branding, EngineError> {
        let base = self.stored(environment, None).await?;
        Ok(match integration {
            Some(id) => self.stored(environment, Some(id)).await?.over(base),
            None => base,
        })
    }

    async fn stored(
        &self,
        environment: &str,
        integration: Option<&str>,
    ) -> Result<Branding, EngineError> {
        match self.engine.store.get_branding(environment, integration).await? {
            // Checked when set; one that no longer parses (written by a newer version) is
            // ignored rather than breaking the page.
            Some(value) => Ok(serde_json::from_value(value).unwrap_or_else(|e| {
                tracing::warn!(environment, error = %e, "stored branding ignored");
                Branding::default()
            })),
            None => Ok(Branding::default()),
        }
    }

    async fn owner_exists(
        &self,
        environment: &EnvironmentId,
        integration: Option<&IntegrationId>,
    ) -> Result<(), EngineError> {
        self.engine.environment(environment).await?;
        if let Some(id) = integration {
            self.engine.integration_record(environment.as_str(), id.as_str()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: Branding) -> String {
        b.check().unwrap_err().field().unwrap_or_default().to_string()
    }

    #[test]
    fn custom_css_cannot_load_anything() {
        for css in [
            "body{background:url(https://x.example/a.png)}",
            "body{background:URL (x)}",
            "@import 'https://x.example/a.css';",
            "@IMPORT url(x);",
            "h1{background-image:image-set('a.png' 1x)}",
            "@font-face{font-family:x;src:local(x)}",
            "h1{content:'\\75 rl(x)'}",
            "</style><script>alert(1)</script>",
            "h1{width:expression(alert(1))}",
        ] {
            let b = Branding { custom_css: Some(css.into()), ..Branding::default() };
            assert_eq!(field(b), "custom_css", "{css}");
        }
        let big = Branding { custom_css: Some("a{}".repeat(3000)), ..Branding::default() };
        assert_eq!(field(big), "custom_css");
        let fine = Branding {
            custom_css: Some("h1 { letter-spacing: .02em; } .card { border-radius: 0 }".into()),
            ..Branding::default()
        };
        fine.check().unwrap();
    }

    #[test]
    fn logos_are_inline_images_and_colours_are_hex() {
        let logo = |l: &str| Branding { logo: Some(l.into()), ..Branding::default() };
        logo("data:image/png;base64,iVBORw0KGgo=").check().unwrap();
        logo("data:image/svg+xml;base64,PHN2Zy8+").check().unwrap();
        for bad in [
            "https://x.example/logo.png",
            "data:text/html;base64,PGI+",
            "data:image/png;base64,@@@",
        ] {
            assert_eq!(field(logo(bad)), "logo", "{bad}");
        }
        let color = |c: &str| Branding { primary_color: Some(c.into()), ..Branding::default() };
        color("#0b5fff").check().unwrap();
        for bad in ["0b5fff", "#fff", "red", "#0b5fzz"] {
            assert_eq!(field(color(bad)), "primary_color", "{bad}");
        }
        assert_eq!(parse_color("#0b5fff"), Some([0x0b, 0x5f, 0xff]));
        let name = Branding { display_name: Some("x".repeat(81)), ..Branding::default() };
        assert_eq!(field(name), "display_name");
    }

    #[test]
    fn an_integration_overrides_its_environment_field_by_field() {
        let env = Branding {
            display_name: Some("Acme".into()),
            primary_color: Some("#111111".into()),
            ..Branding::default()
        };
        let integration = Branding { primary_color: Some("#222222".into()), ..Branding::default() };
        let merged = integration.over(env);
        assert_eq!(merged.display_name.as_deref(), Some("Acme"));
        assert_eq!(merged.primary_color.as_deref(), Some("#222222"));
    }
}
