//! Settings of the mapping: [`MappingOptions`], [`Dialect`], [`Dialects`], [`Content`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An attribute vocabulary that backends read. The OpenTelemetry GenAI basics
/// (`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.*`, ...) and the
/// `tracecraft.*` keys are always emitted; each dialect adds its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dialect {
    /// OpenTelemetry GenAI content keys: `gen_ai.input.messages`, `gen_ai.output.messages`,
    /// `gen_ai.system_instructions`, `gen_ai.tool.call.*`, `gen_ai.conversation.id`, ...
    #[serde(rename = "genai")]
    GenAi,
    /// OpenInference (Arize Phoenix, Langfuse): `openinference.span.kind`,
    /// `llm.input_messages.N.message.*`, `retrieval.documents.N.document.*`, `tool.*`, ...
    #[serde(rename = "openinference")]
    OpenInference,
    /// MLflow: `mlflow.spanType` on every span, the trace name on the run span.
    #[serde(rename = "mlflow")]
    Mlflow,
}

impl Dialect {
    /// Every dialect, in the order the settings name them.
    pub const ALL: [Dialect; 3] = [Dialect::GenAi, Dialect::OpenInference, Dialect::Mlflow];

    /// The setting's name (`genai`, `openinference`, `mlflow`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::GenAi => "genai",
            Dialect::OpenInference => "openinference",
            Dialect::Mlflow => "mlflow",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Dialect::GenAi => 1,
            Dialect::OpenInference => 2,
            Dialect::Mlflow => 4,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Dialect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OTLP dialect: expected `genai`, `openinference`, `mlflow` or `all`")]
pub struct UnknownDialect;

/// A set of [`Dialect`]s (default: all three). Parsed from `all`, `none`, or a comma-separated
/// list (`genai,openinference`); serde reads a string or a list of names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "DialectsRepr", into = "Vec<Dialect>")]
pub struct Dialects(u8);

impl Default for Dialects {
    fn default() -> Self {
        Dialects::all()
    }
}

impl Dialects {
    /// Every dialect.
    #[must_use]
    pub const fn all() -> Self {
        Dialects(7)
    }
    /// No dialect: the GenAI basics and `tracecraft.*` keys only.
    #[must_use]
    pub const fn none() -> Self {
        Dialects(0)
    }
    /// This set with `dialect` added.
    #[must_use]
    pub const fn with(self, dialect: Dialect) -> Self {
        Dialects(self.0 | dialect.bit())
    }
    /// Whether `dialect` is in the set.
    #[must_use]
    pub const fn contains(self, dialect: Dialect) -> bool {
        self.0 & dialect.bit() != 0
    }
    /// The dialects in the set.
    pub fn iter(self) -> impl Iterator<Item = Dialect> {
        Dialect::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

impl fmt::Debug for Dialects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Dialect> for Dialects {
    fn from_iter<I: IntoIterator<Item = Dialect>>(iter: I) -> Self {
        iter.into_iter().fold(Dialects::none(), Dialects::with)
    }
}

impl From<Dialects> for Vec<Dialect> {
    fn from(d: Dialects) -> Self {
        d.iter().collect()
    }
}

impl FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "genai" | "gen_ai" => Ok(Dialect::GenAi),
            "openinference" => Ok(Dialect::OpenInference),
            "mlflow" => Ok(Dialect::Mlflow),
            _ => Err(UnknownDialect),
        }
    }
}

impl FromStr for Dialects {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Dialects::all()),
            "none" | "" => Ok(Dialects::none()),
            list => list.split(',').map(str::parse).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DialectsRepr {
    One(String),
    List(Vec<Dialect>),
}

impl TryFrom<DialectsRepr> for Dialects {
    type Error = UnknownDialect;
    fn try_from(r: DialectsRepr) -> Result<Self, Self::Error> {
        match r {
            DialectsRepr::One(s) => s.parse(),
            DialectsRepr::List(l) => Ok(l.into_iter().collect()),
        }
    }
}

/// Whether span content (inputs, outputs, messages, documents, tool arguments, streamed
/// chunks) is exported. Content reaching the exporter has already been redacted by the
/// pipeline; `none` is for operators who want metadata only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Content {
    /// Everything (default).
    #[default]
    Full,
    /// Names, types, times, models, tokens, costs, errors and attributes only.
    None,
}

/// A string that names no [`Content`] setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OTLP content setting: expected `full` or `none`")]
pub struct UnknownContent;

impl FromStr for Content {
    type Err = UnknownContent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Content::Full),
            "none" => Ok(Content::None),
            _ => Err(UnknownContent),
        }
    }
}

/// Settings of the mapping that do not come from the run. Serde-loadable (all fields
/// optional); build one in code with [`MappingOptions::builder`].
///
/// ```
/// use tracecraft_otlp::mapping::{Content, Dialect, Dialects, MappingOptions};
/// let options = MappingOptions::builder()
///     .service_name("support-bot")
///     .resource_attribute("openinference.project.name", "support")
///     .dialects(Dialects::none().with(Dialect::OpenInference))
///     .content(Content::Full)
///     .build();
/// assert!(options.dialects.contains(Dialect::OpenInference));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MappingOptions {
    /// The resource's `service.name` for runs without a `service.name` attribute
    /// (default: `service.name` of [`resource_attributes`](Self::resource_attributes), else
    /// [`UNKNOWN_SERVICE`](super::UNKNOWN_SERVICE)).
    pub service_name: Option<String>,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`: `service.version`,
    /// `openinference.project.name`, team, ...). The SDK's own keys win over these.
    pub resource_attributes: BTreeMap<String, String>,
    /// The attribute dialects (default all).
    pub dialects: Dialects,
    /// Content or metadata only (default content).
    pub content: Content,
}

impl MappingOptions {
    /// A builder with the defaults.
    pub fn builder() -> MappingOptionsBuilder {
        MappingOptionsBuilder::default()
    }
}

/// Builds [`MappingOptions`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct MappingOptionsBuilder {
    options: MappingOptions,
}

impl MappingOptionsBuilder {
    /// See [`MappingOptions::service_name`].
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.options.service_name = Some(name.into());
        self
    }
    /// Adds one resource attribute.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options
            .resource_attributes
            .insert(key.into(), value.into());
        self
    }
    /// See [`MappingOptions::dialects`].
    pub fn dialects(mut self, dialects: Dialects) -> Self {
        self.options.dialects = dialects;
        self
    }
    /// See [`MappingOptions::content`].
    pub fn content(mut self, content: Content) -> Self {
        self.options.content = content;
        self
    }
    /// The options.
    #[must_use]
    pub fn build(self) -> MappingOptions {
        self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_parse_from_strings_and_lists() {
        assert_eq!("all".parse::<Dialects>().unwrap(), Dialects::all());
        let two: Dialects = "genai, mlflow".parse().unwrap();
        assert!(two.contains(Dialect::GenAi) && two.contains(Dialect::Mlflow));
        assert!(!two.contains(Dialect::OpenInference));
        assert!("phoenix".parse::<Dialects>().is_err());
        let from_list: Dialects = serde_json::from_str(r#"["openinference"]"#).unwrap();
        assert_eq!(from_list, Dialects::none().with(Dialect::OpenInference));
        let from_str: Dialects = serde_json::from_str(r#""genai""#).unwrap();
        assert_eq!(from_str, Dialects::none().with(Dialect::GenAi));
        assert!(serde_json::from_str::<Dialects>(r#""nope""#).is_err());
        assert_eq!(
            serde_json::to_string(&Dialects::all()).unwrap(),
            r#"["genai","openinference","mlflow"]"#
        );
        assert_eq!("none".parse::<Content>().unwrap(), Content::None);
        let o: MappingOptions =
            serde_json::from_str(r#"{"content":"none","dialects":"mlflow"}"#).unwrap();
        assert_eq!(o.content, Content::None);
        assert!(serde_json::from_str::<MappingOptions>(r#"{"dialect":"x"}"#).is_err());
    }
}
