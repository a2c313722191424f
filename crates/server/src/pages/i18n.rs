//! The connect page's languages: one Fluent catalog per language (`web/locales/*.ftl`, built
//! into the binary), and the choice of one for a request: the session's `lang`, else the
//! browser's `Accept-Language`, else English.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use fluent_langneg::{NegotiationStrategy, accepted_languages, negotiate_languages};
use unic_langid::LanguageIdentifier;

/// The languages the page speaks, each with its catalog; the first is the fallback.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", include_str!("../../../../web/locales/en.ftl")),
    ("fr", include_str!("../../../../web/locales/fr.ftl")),
    ("de", include_str!("../../../../web/locales/de.ftl")),
    ("es", include_str!("../../../../web/locales/es.ftl")),
    ("ja", include_str!("../../../../web/locales/ja.ftl")),
];

struct Catalog {
    ids: Vec<LanguageIdentifier>,
    bundles: Vec<FluentBundle<FluentResource>>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut ids = Vec::new();
        let mut bundles = Vec::new();
        for (lang, source) in LANGUAGES {
            let id: LanguageIdentifier =
                lang.parse().unwrap_or_else(|e| panic!("language {lang}: {e}"));
            // The catalogs are part of the binary: a syntax error is a build mistake that the
            // tests below catch.
            let resource = FluentResource::try_new((*source).to_string())
                .unwrap_or_else(|(_, errors)| panic!("web/locales/{lang}.ftl: {errors:?}"));
            let mut bundle = FluentBundle::new_concurrent(vec![id.clone()]);
            // No Unicode isolation marks around placeables: the page is HTML, which isolates
            // by itself where it matters, and marks would show up in copied text.
            bundle.set_use_isolating(false);
            bundle
                .add_resource(resource)
                .unwrap_or_else(|errors| panic!("web/locales/{lang}.ftl: {errors:?}"));
            ids.push(id);
            bundles.push(bundle);
        }
        Catalog { ids, bundles }
    })
}

/// Whether `lang` is one of [`LANGUAGES`].
pub fn is_supported(lang: &str) -> bool {
    LANGUAGES.iter().any(|(l, _)| *l == lang)
}

/// The messages of one language.
#[derive(Clone, Copy)]
pub struct Messages {
    index: usize,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Messages").field(&self.lang()).finish()
    }
}

impl Messages {
    /// The language for a request: the session's `lang` when it names one of ours, else the
    /// best match of the browser's `Accept-Language`, else English.
    pub fn choose(session_lang: Option<&str>, accept_language: Option<&str>) -> Self {
        let catalog = catalog();
        if let Some(index) = session_lang.and_then(|l| LANGUAGES.iter().position(|(x, _)| *x == l))
        {
            return Self { index };
        }
        let requested = accepted_languages::parse(accept_language.unwrap_or_default());
        let fallback = &catalog.ids[0];
        let chosen = negotiate_languages(
            &requested,
            &catalog.ids,
            Some(fallback),
            NegotiationStrategy::Lookup,
        );
        let index = chosen
            .first()
            .and_then(|id| catalog.ids.iter().position(|x| x == *id))
            .unwrap_or_default();
        Self { index }
    }

    /// Its language tag (`en`, `fr`, …).
    pub fn lang(&self) -> &'static str {
        LANGUAGES[self.index].0
    }

    /// The message `id` with `args`; the English one when this language lacks it (a test
    /// makes sure none does), and the id itself when no catalog has it.
    pub fn get(&self, id: &str, args: &[(&str, &str)]) -> String {
        let catalog = catalog();
        let mut fluent_args = FluentArgs::new();
        for (key, value) in args {
            fluent_args.set(*key, *value);
        }
        for bundle in [&catalog.bundles[self.index], &catalog.bundles[0]] {
            if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
                if !errors.is_empty() {
                    tracing::warn!(id, lang = self.lang(), ?errors, "connect page message");
                }
                return text.into_owned();
            }
        }
        tracing::warn!(id, "connect page message missing from every catalog");
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The message ids of a catalog: its lines `id = …` (every catalog also parses: see
    /// [`catalog`]).
    fn ids(source: &str) -> BTreeSet<String> {
        source
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|l| l.split_once(" =").map(|(id, _)| id.to_string()))
            .collect()
    }

    #[test]
    fn every_message_exists_in_every_language() {
        let catalog = catalog();
        assert_eq!(catalog.bundles.len(), LANGUAGES.len());
        let english = ids(LANGUAGES[0].1);
        assert!(english.len() > 30, "{english:?}");
        for (lang, source) in &LANGUAGES[1..] {
            let these = ids(source);
            let missing: Vec<_> = english.difference(&these).collect();
            let extra: Vec<_> = these.difference(&english).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{lang}: missing {missing:?}, extra {extra:?}"
            );
        }
        for (bundle, (lang, _)) in catalog.bundles.iter().zip(LANGUAGES) {
            for id in &english {
                assert!(bundle.has_message(id), "{lang} does not load `{id}`");
            }
        }
    }

    #[test]
    fn every_message_the_page_uses_is_in_the_catalog() {
        let english = ids(LANGUAGES[0].1);
        let page = include_str!("../../../../web/page.html");
        let used = regex_lite_ids(page);
        assert!(used.len() > 10, "{used:?}");
        let missing: Vec<_> = used.difference(&english).collect();
        assert!(missing.is_empty(), "page.html uses unknown messages {missing:?}");
    }

    /// The ids in the template's `t("…")` and `t('…')` calls.
    fn regex_lite_ids(page: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for quote in ['"', '\''] {
            for rest in page.split(&format!("t({quote}")).skip(1) {
                out.extend(rest.split(quote).next().map(str::to_string));
            }
        }
        out
    }

    #[test]
    fn messages_take_their_arguments_in_every_language() {
        for (lang, _) in LANGUAGES {
            let m = Messages::choose(Some(lang), None);
            assert_eq!(m.lang(), *lang);
            let text = m.get("title-connect", &[("name", "Acme")]);
            assert!(text.contains("Acme") && !text.contains('{'), "{lang}: {text}");
            let text = m.get("test-unauthorized", &[("name", "Acme"), ("status", "401")]);
            assert!(text.contains("401"), "{lang}: {text}");
        }
    }

    #[test]
    fn the_language_follows_the_session_then_the_browser() {
        let pick = |s: Option<&str>, a: Option<&str>| Messages::choose(s, a).lang();
        assert_eq!(pick(Some("ja"), Some("fr")), "ja");
        assert_eq!(pick(None, Some("de-CH, fr;q=0.8, en;q=0.5")), "de");
        assert_eq!(pick(None, Some("pt-BR, es;q=0.9")), "es");
        assert_eq!(pick(None, Some("zz")), "en");
        assert_eq!(pick(None, None), "en");
        assert_eq!(pick(Some("xx"), Some("fr-CA")), "fr", "an unknown session lang is ignored");
    }
}
