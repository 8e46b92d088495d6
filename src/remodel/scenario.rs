//! Loading scenarios: the loading (and hormone) history a remodeling run is driven by.
//!
//! A [`Scenario`] is a sequence of [`Phase`]s. Each phase lasts a whole number of days and
//! scales every load case (see [`LOAD_CASES`]) relative to habitual Earth loading, where
//! scale `1.0` is habitual, `0.0` is no load at all (ideal microgravity), and values above
//! `1.0` are overloading. A phase can also scale the PTH production rate (`pth_scale`).
//!
//! The load cases are:
//! - `axial`: the daily axial compression of the vertebra through its endplates;
//! - `flexion`: the daily anterior flexion moment.
//!
//! # File format
//!
//! Scenarios are TOML files:
//!
//! ```toml
//! name = "spaceflight-215"          # required: 1 to 64 characters
//! description = "..."               # optional, free text
//!
//! [[phase]]                         # at least one phase, in chronological order
//! name = "preflight"                # required: 1 to 64 characters
//! days = 14                         # required: integer, 1 to 36500
//! load_scale = { axial = 1.0, flexion = 1.0 }   # optional; omitted cases default to 1.0
//! pth_scale = 1.0                   # optional, default 1.0
//!
//! [[phase]]
//! name = "microgravity"
//! days = 215
//! [phase.load_scale]                # the table form is allowed too
//! axial = 0.10
//! flexion = 0.05
//! ```
//!
//! Rules, checked both when parsing ([`Scenario::from_toml_str`], [`Scenario::load`]) and for
//! scenarios built or edited in code ([`Scenario::validate`]):
//! - no keys other than the ones above (`load_scale` keys must be in [`LOAD_CASES`]);
//! - `days` is an integer in `1..=36500` ([`MAX_DAYS`]) and the phases add up to at most
//!   [`MAX_DAYS`] days;
//! - every load scale is a finite number in `[0, 10]` ([`MAX_LOAD_SCALE`]); integers such as
//!   `1` are accepted for numbers;
//! - `pth_scale` is a finite number in `(0, 100]` ([`MAX_PTH_SCALE`]);
//! - names are not blank, have at most [`MAX_NAME_LEN`] characters and no control characters.
//!
//! Errors from parsing name the origin (file path, or `builtin:NAME`), the 1-based line and
//! column, and the reason, e.g. `spaceflight.toml:7:8: days must be >= 1, got 0`.
//!
//! Built-in scenarios ([`Scenario::builtin_names`]) are the files in `assets/scenarios/`,
//! embedded in the binary.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

/// Names of the load cases, in the order used by [`LoadScale::as_array`].
pub const LOAD_CASES: [&str; 2] = ["axial", "flexion"];

/// Longest allowed phase, and longest allowed scenario, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// Largest allowed load scale (10 times habitual loading).
pub const MAX_LOAD_SCALE: f64 = 10.0;

/// Largest allowed PTH production scale.
pub const MAX_PTH_SCALE: f64 = 100.0;

/// Longest allowed scenario or phase name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Built-in scenarios: name and embedded TOML text.
const BUILTINS: [(&str, &str); 4] = [
    (
        "earth-baseline",
        include_str!("../../assets/scenarios/earth-baseline.toml"),
    ),
    (
        "spaceflight-215",
        include_str!("../../assets/scenarios/spaceflight-215.toml"),
    ),
    (
        "bed-rest-90",
        include_str!("../../assets/scenarios/bed-rest-90.toml"),
    ),
    (
        "spaceflight-215-recovery",
        include_str!("../../assets/scenarios/spaceflight-215-recovery.toml"),
    ),
];

/// Names of the built-in scenarios, in the same order as [`BUILTINS`].
const BUILTIN_NAMES: [&str; 4] = [BUILTINS[0].0, BUILTINS[1].0, BUILTINS[2].0, BUILTINS[3].0];

/// Scale factors of each load case relative to habitual Earth loading (1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadScale {
    /// Scale of the daily axial compression through the endplates.
    pub axial: f64,
    /// Scale of the daily anterior flexion moment.
    pub flexion: f64,
}

impl LoadScale {
    /// Habitual Earth loading: every case at 1.0.
    pub const HABITUAL: LoadScale = LoadScale {
        axial: 1.0,
        flexion: 1.0,
    };

    /// The scale of the load case named `case` (one of [`LOAD_CASES`]), if it exists.
    pub fn get(&self, case: &str) -> Option<f64> {
        match case {
            "axial" => Some(self.axial),
            "flexion" => Some(self.flexion),
            _ => None,
        }
    }

    /// Mutable access to the scale of the load case named `case`, if it exists.
    pub fn get_mut(&mut self, case: &str) -> Option<&mut f64> {
        match case {
            "axial" => Some(&mut self.axial),
            "flexion" => Some(&mut self.flexion),
            _ => None,
        }
    }

    /// The scales in [`LOAD_CASES`] order.
    pub fn as_array(&self) -> [f64; 2] {
        [self.axial, self.flexion]
    }
}

impl Default for LoadScale {
    /// Habitual loading, [`LoadScale::HABITUAL`].
    fn default() -> Self {
        LoadScale::HABITUAL
    }
}

/// One phase of a scenario: a stretch of days with constant loading and hormone scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Short name shown in plots and reports, e.g. `"microgravity"`.
    pub name: String,
    /// Duration in days, `1..=`[`MAX_DAYS`].
    pub days: u32,
    /// Load scale per load case, relative to habitual loading.
    pub load_scale: LoadScale,
    /// Multiplies the PTH production rate; 1.0 is normal.
    pub pth_scale: f64,
}

impl Phase {
    /// A phase of `days` days with habitual loading and normal PTH production.
    pub fn habitual(name: impl Into<String>, days: u32) -> Phase {
        Phase {
            name: name.into(),
            days,
            load_scale: LoadScale::HABITUAL,
            pth_scale: 1.0,
        }
    }
}

/// A named loading history: phases in chronological order, starting on day 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name, e.g. `"spaceflight-215"`.
    pub name: String,
    /// Free-text explanation of what the scenario represents.
    pub description: String,
    /// The phases, in chronological order.
    pub phases: Vec<Phase>,
}

/// Why a scenario could not be loaded, parsed, validated or saved.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario text or value is invalid. Displays as `origin:line:column: reason`
    /// (line and column are omitted when unknown, e.g. for [`Scenario::validate`]).
    #[error("{origin}{}: {reason}", location_suffix(.line, .column))]
    Invalid {
        /// Where the scenario came from: a file path, `builtin:NAME`, or `scenario `NAME``.
        origin: String,
        /// 1-based line of the offending text, if known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, if known.
        column: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A scenario file could not be read or written.
    #[error("scenario file `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`Scenario::resolve`] got a name that is neither a built-in scenario nor an existing
    /// file.
    #[error(
        "`{name}` is neither a built-in scenario ({}) nor an existing file",
        BUILTIN_NAMES.join(", ")
    )]
    Unknown {
        /// The name or path given.
        name: String,
    },
}

impl ScenarioError {
    /// The 1-based line of the problem, for [`ScenarioError::Invalid`] errors that have one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// The reason of an [`ScenarioError::Invalid`] error.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// `:line:column`, `:line` or nothing.
fn location_suffix(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl Scenario {
    /// The built-in scenario called `name` (see [`Scenario::builtin_names`]), if any.
    pub fn builtin(name: &str) -> Option<Scenario> {
        let (name, text) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        match Scenario::from_toml_str(text, &format!("builtin:{name}")) {
            Ok(s) => Some(s),
            // The built-in files are checked by the tests, so this is a build defect.
            Err(e) => panic!("invalid built-in scenario: {e}"),
        }
    }

    /// Names of the built-in scenarios.
    pub fn builtin_names() -> &'static [&'static str] {
        &BUILTIN_NAMES
    }

    /// Parses and validates scenario TOML. `origin` (a file path, or `builtin:NAME`) is only
    /// used in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        // Editors on Windows may prepend a byte-order mark; TOML does not allow one.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let parser = Parser { origin, text };
        let doc = DeTable::parse(text).map_err(|e| parser.syntax_error(&e))?;
        parser.scenario(doc.get_ref())
    }

    /// Reads and parses the scenario file at `path`; errors name the path.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::from_toml_str(&text, &path.display().to_string())
    }

    /// A built-in scenario if `name_or_path` names one, otherwise the scenario file at that
    /// path.
    pub fn resolve(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some(s) = Scenario::builtin(name_or_path) {
            return Ok(s);
        }
        Scenario::load(Path::new(name_or_path)).map_err(|e| match e {
            ScenarioError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ScenarioError::Unknown {
                    name: name_or_path.to_string(),
                }
            }
            e => e,
        })
    }

    /// The scenario as TOML in the format of the module documentation, with every key
    /// written out. [`Scenario::from_toml_str`] reads it back to an equal scenario (if the
    /// scenario is valid). Comments of a parsed file are not kept.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("name = {}\n", toml_str(&self.name)));
        out.push_str(&format!("description = {}\n", toml_str(&self.description)));
        for phase in &self.phases {
            out.push_str("\n[[phase]]\n");
            out.push_str(&format!("name = {}\n", toml_str(&phase.name)));
            out.push_str(&format!("days = {}\n", phase.days));
            let scales: Vec<String> = LOAD_CASES
                .iter()
                .zip(phase.load_scale.as_array())
                .map(|(case, v)| format!("{case} = {}", toml_f64(v)))
                .collect();
            out.push_str(&format!("load_scale = {{ {} }}\n", scales.join(", ")));
            out.push_str(&format!("pth_scale = {}\n", toml_f64(phase.pth_scale)));
        }
        out
    }

    /// Validates the scenario, then writes it as TOML to `path` atomically (a crash never
    /// leaves a half-written file, and an error leaves an existing file untouched).
    pub fn save(&self, path: &Path) -> Result<(), ScenarioError> {
        self.validate()?;
        crate::atomic::write_bytes_atomic(path, self.to_toml_string().as_bytes()).map_err(
            |source| ScenarioError::Io {
                path: path.to_path_buf(),
                source,
            },
        )
    }

    /// Total duration in days (saturating, for scenarios not yet validated).
    pub fn total_days(&self) -> u32 {
        self.phases
            .iter()
            .fold(0u32, |acc, p| acc.saturating_add(p.days))
    }

    /// The phase (index and phase) that day `day` belongs to: day 0 is the first day of the
    /// first phase, and a phase starting on day `s` covers days `s..s + days`. `None` from
    /// [`Scenario::total_days`] on.
    pub fn phase_at(&self, day: u32) -> Option<(usize, &Phase)> {
        let mut start = 0u32;
        for (i, phase) in self.phases.iter().enumerate() {
            let end = start.saturating_add(phase.days);
            if day < end {
                return Some((i, phase));
            }
            start = end;
        }
        None
    }

    /// The first day of each phase (one entry per phase; the first is 0).
    pub fn phase_starts(&self) -> Vec<u32> {
        let mut start = 0u32;
        self.phases
            .iter()
            .map(|p| {
                let s = start;
                start = start.saturating_add(p.days);
                s
            })
            .collect()
    }

    /// Checks the same rules as parsing, for scenarios built or edited in code. Errors have
    /// origin `scenario `NAME`` and no line; the reason names the phase.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |reason: String| ScenarioError::Invalid {
            origin: format!("scenario `{}`", self.name),
            line: None,
            column: None,
            reason,
        };
        check_name("scenario name", &self.name).map_err(invalid)?;
        if self.phases.is_empty() {
            return Err(invalid(NO_PHASES.to_string()));
        }
        let mut total = 0u64;
        for (i, phase) in self.phases.iter().enumerate() {
            let in_phase =
                |reason: String| invalid(format!("phase {} `{}`: {reason}", i + 1, phase.name));
            check_name("phase name", &phase.name).map_err(in_phase)?;
            check_days(i64::from(phase.days), &phase.days.to_string()).map_err(in_phase)?;
            for case in LOAD_CASES {
                let v = phase.load_scale.get(case).unwrap_or(1.0);
                check_load_scale(case, v, &v.to_string()).map_err(in_phase)?;
            }
            check_pth_scale(phase.pth_scale, &phase.pth_scale.to_string()).map_err(in_phase)?;
            total += u64::from(phase.days);
            check_total(total, &phase.name).map_err(in_phase)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Rules shared by parsing and `validate`. Each returns the reason on failure; `shown` is how
// the offending value is written in the message (the source text when parsing).

const NO_PHASES: &str = "no phases: a scenario needs at least one [[phase]]";

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if name.trim().is_empty() {
        Err(format!("{what} must not be empty"))
    } else if len > MAX_NAME_LEN {
        Err(format!(
            "{what} must be at most {MAX_NAME_LEN} characters, got {len}"
        ))
    } else if name.chars().any(char::is_control) {
        Err(format!("{what} must not contain control characters"))
    } else {
        Ok(())
    }
}

fn check_days(days: i64, shown: &str) -> Result<u32, String> {
    if days < 1 {
        Err(format!("days must be >= 1, got {shown}"))
    } else if days > i64::from(MAX_DAYS) {
        Err(format!("days must be <= {MAX_DAYS}, got {shown}"))
    } else {
        Ok(days as u32)
    }
}

fn check_load_scale(case: &str, v: f64, shown: &str) -> Result<(), String> {
    if !v.is_finite() {
        Err(format!("load_scale.{case} must be finite, got {shown}"))
    } else if !(0.0..=MAX_LOAD_SCALE).contains(&v) {
        Err(format!(
            "load_scale.{case} must be within [0, {MAX_LOAD_SCALE}], got {shown}"
        ))
    } else {
        Ok(())
    }
}

fn check_pth_scale(v: f64, shown: &str) -> Result<(), String> {
    if !v.is_finite() {
        Err(format!("pth_scale must be finite, got {shown}"))
    } else if !(v > 0.0 && v <= MAX_PTH_SCALE) {
        Err(format!(
            "pth_scale must be within (0, {MAX_PTH_SCALE}], got {shown}"
        ))
    } else {
        Ok(())
    }
}

fn check_total(total: u64, phase: &str) -> Result<(), String> {
    if total > u64::from(MAX_DAYS) {
        Err(format!(
            "the phases add up to more than {MAX_DAYS} days ({total} days up to the end of `{phase}`)"
        ))
    } else {
        Ok(())
    }
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML float literal that reads back to the same `f64`.
fn toml_f64(v: f64) -> String {
    toml::Value::Float(v).to_string()
}

// ---------------------------------------------------------------------------------------------
// Parsing with positions.

type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);

/// Top-level keys.
const SCENARIO_KEYS: [&str; 3] = ["name", "description", "phase"];
/// Keys of a `[[phase]]` table.
const PHASE_KEYS: [&str; 4] = ["name", "days", "load_scale", "pth_scale"];

struct Parser<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Parser<'_> {
    /// An error located at byte offset `span.start`.
    fn error_at(&self, span: Range<usize>, reason: impl Into<String>) -> ScenarioError {
        let (line, column) = line_column(self.text, span.start);
        ScenarioError::Invalid {
            origin: self.origin.to_string(),
            line: Some(line),
            column: Some(column),
            reason: reason.into(),
        }
    }

    /// An error about the whole document (e.g. a missing top-level key), without position.
    /// An error about the file as a whole (a missing top-level key): reported at line 1.
    fn error_nowhere(&self, reason: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            origin: self.origin.to_string(),
            line: Some(1),
            column: None,
            reason: reason.into(),
        }
    }

    fn syntax_error(&self, e: &toml::de::Error) -> ScenarioError {
        let mut reason = format!("TOML syntax error: {}", e.message().trim());
        if let Some(span) = e.span()
            && e.message() == "duplicate key"
            && let Some(key) = self.text.get(span).filter(|k| !k.is_empty())
        {
            reason.push_str(&format!(" `{key}`"));
        }
        match e.span() {
            Some(span) => self.error_at(span, reason),
            None => self.error_nowhere(reason),
        }
    }

    /// The source text of a span, for messages.
    fn shown(&self, span: Range<usize>) -> &str {
        self.text.get(span).unwrap_or("?")
    }

    /// The entries of `table` in source order, rejecting keys not in `allowed`.
    fn entries<'t, 'i>(
        &self,
        table: &'t DeTable<'i>,
        allowed: &[&str],
        context: &str,
    ) -> Result<Vec<Entry<'t, 'i>>, ScenarioError> {
        let mut entries: Vec<Entry<'t, 'i>> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, _) in &entries {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let expected: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                return Err(self.error_at(
                    key.span(),
                    format!(
                        "unknown key `{}` {context} (expected one of {})",
                        key.get_ref(),
                        expected.join(", ")
                    ),
                ));
            }
        }
        Ok(entries)
    }

    fn scenario(&self, doc: &DeTable<'_>) -> Result<Scenario, ScenarioError> {
        let entries = self.entries(doc, &SCENARIO_KEYS, "at the top level")?;
        let mut name = None;
        let mut description = String::new();
        let mut phases = None;
        for (key, value) in entries {
            match key.get_ref().as_ref() {
                "name" => {
                    let s = self.string("name", value)?;
                    check_name("scenario name", &s).map_err(|r| self.error_at(value.span(), r))?;
                    name = Some(s);
                }
                "description" => description = self.string("description", value)?,
                _ => phases = Some(self.phases(value)?),
            }
        }
        let name = name.ok_or_else(|| self.error_nowhere("missing key `name`"))?;
        let phases = phases.ok_or_else(|| self.error_nowhere(NO_PHASES))?;
        Ok(Scenario {
            name,
            description,
            phases,
        })
    }

    fn phases(&self, value: &Spanned<DeValue<'_>>) -> Result<Vec<Phase>, ScenarioError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.error_at(
                value.span(),
                format!(
                    "`phase` must be an array of tables written [[phase]], got {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        if items.is_empty() {
            return Err(self.error_at(value.span(), NO_PHASES));
        }
        let mut phases = Vec::with_capacity(items.len());
        let mut total = 0u64;
        for item in items.iter() {
            let DeValue::Table(table) = item.get_ref() else {
                return Err(self.error_at(
                    item.span(),
                    format!(
                        "each phase must be a table, got {}",
                        item.get_ref().type_str()
                    ),
                ));
            };
            let (phase, days_span) = self.phase(table, item.span())?;
            total += u64::from(phase.days);
            check_total(total, &phase.name).map_err(|r| self.error_at(days_span, r))?;
            phases.push(phase);
        }
        Ok(phases)
    }

    /// One phase; also returns the span of its `days` value.
    fn phase(
        &self,
        table: &DeTable<'_>,
        table_span: Range<usize>,
    ) -> Result<(Phase, Range<usize>), ScenarioError> {
        let entries = self.entries(table, &PHASE_KEYS, "in [[phase]]")?;
        let mut name = None;
        let mut days = None;
        let mut load_scale = LoadScale::HABITUAL;
        let mut pth_scale = 1.0;
        for (key, value) in entries {
            match key.get_ref().as_ref() {
                "name" => {
                    let s = self.string("name", value)?;
                    check_name("phase name", &s).map_err(|r| self.error_at(value.span(), r))?;
                    name = Some(s);
                }
                "days" => days = Some((self.days(value)?, value.span())),
                "load_scale" => load_scale = self.load_scale(value)?,
                _ => {
                    let v = self.number("pth_scale", value)?;
                    check_pth_scale(v, self.shown(value.span()))
                        .map_err(|r| self.error_at(value.span(), r))?;
                    pth_scale = v;
                }
            }
        }
        let name =
            name.ok_or_else(|| self.error_at(table_span.clone(), "missing key `name` in phase"))?;
        let (days, days_span) = days.ok_or_else(|| {
            self.error_at(table_span, format!("missing key `days` in phase `{name}`"))
        })?;
        let phase = Phase {
            name,
            days,
            load_scale,
            pth_scale,
        };
        Ok((phase, days_span))
    }

    fn days(&self, value: &Spanned<DeValue<'_>>) -> Result<u32, ScenarioError> {
        let shown = self.shown(value.span());
        let reason = match value.get_ref() {
            DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                Ok(days) => match check_days(days, shown) {
                    Ok(days) => return Ok(days),
                    Err(reason) => reason,
                },
                // Does not fit in an i64: far out of range either way.
                Err(_) if int.as_str().starts_with('-') => {
                    format!("days must be >= 1, got {shown}")
                }
                Err(_) => format!("days must be <= {MAX_DAYS}, got {shown}"),
            },
            DeValue::Float(_) => format!("days must be a whole number (an integer), got {shown}"),
            other => format!("days must be an integer, got {}", other.type_str()),
        };
        Err(self.error_at(value.span(), reason))
    }

    fn load_scale(&self, value: &Spanned<DeValue<'_>>) -> Result<LoadScale, ScenarioError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error_at(
                value.span(),
                format!(
                    "load_scale must be a table such as {{ axial = 1.0, flexion = 1.0 }}, got {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        let mut scale = LoadScale::HABITUAL;
        for (key, value) in self.entries(table, &LOAD_CASES, "in load_scale")? {
            let case = key.get_ref().as_ref();
            let v = self.number(&format!("load_scale.{case}"), value)?;
            check_load_scale(case, v, self.shown(value.span()))
                .map_err(|r| self.error_at(value.span(), r))?;
            if let Some(slot) = scale.get_mut(case) {
                *slot = v;
            }
        }
        Ok(scale)
    }

    fn string(&self, what: &str, value: &Spanned<DeValue<'_>>) -> Result<String, ScenarioError> {
        match value.get_ref() {
            DeValue::String(s) => Ok(s.to_string()),
            other => Err(self.error_at(
                value.span(),
                format!("{what} must be a string, got {}", other.type_str()),
            )),
        }
    }

    /// A float or integer as `f64` (non-finite values are returned for the caller to reject).
    fn number(&self, what: &str, value: &Spanned<DeValue<'_>>) -> Result<f64, ScenarioError> {
        let parsed = match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix())
                .ok()
                .map(|i| i as f64),
            other => {
                return Err(self.error_at(
                    value.span(),
                    format!("{what} must be a number, got {}", other.type_str()),
                ));
            }
        };
        parsed.ok_or_else(|| {
            self.error_at(
                value.span(),
                format!(
                    "{what} is not a representable number: {}",
                    self.shown(value.span())
                ),
            )
        })
    }
}

/// 1-based line and column (in characters) of byte offset `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid scenario whose line 5 is `days = ...`.
    fn with_days(days: &str) -> String {
        format!("name = \"t\"\n\n[[phase]]\nname = \"p\"\ndays = {days}\n")
    }

    /// Parses `text` expecting an `Invalid` error; returns (line, column, reason, display).
    fn reject(text: &str) -> (Option<usize>, Option<usize>, String, String) {
        match Scenario::from_toml_str(text, "test.toml") {
            Ok(s) => panic!("accepted invalid scenario: {s:?}\n{text}"),
            Err(e @ ScenarioError::Invalid { .. }) => {
                let shown = e.to_string();
                let ScenarioError::Invalid {
                    origin,
                    line,
                    column,
                    reason,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(origin, "test.toml");
                (line, column, reason, shown)
            }
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }

    fn builtin_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scenarios")
    }

    #[test]
    fn every_builtin_parses_and_round_trips_through_toml() {
        for name in Scenario::builtin_names() {
            let s = Scenario::builtin(name).unwrap();
            assert_eq!(s.name, *name);
            assert!(!s.description.is_empty());
            s.validate().unwrap();
            let text = s.to_toml_string();
            let back = Scenario::from_toml_str(&text, "round-trip").unwrap();
            assert_eq!(back, s, "{text}");
        }
        assert!(Scenario::builtin("no-such-scenario").is_none());
    }

    #[test]
    fn builtin_names_match_the_asset_files_and_the_files_parse() {
        let mut files: Vec<String> = std::fs::read_dir(builtin_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut names: Vec<String> = Scenario::builtin_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        assert_eq!(files, names);
        for name in Scenario::builtin_names() {
            let from_file = Scenario::load(&builtin_dir().join(format!("{name}.toml"))).unwrap();
            assert_eq!(Some(from_file), Scenario::builtin(name));
        }
    }

    #[test]
    fn builtins_have_the_documented_phases() {
        let s = Scenario::builtin("spaceflight-215").unwrap();
        let summary: Vec<(&str, u32, f64, f64)> = s
            .phases
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.days,
                    p.load_scale.axial,
                    p.load_scale.flexion,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("preflight", 14, 1.0, 1.0),
                ("microgravity", 215, 0.10, 0.05),
                ("recovery", 365, 1.0, 1.0),
            ]
        );
        let b = Scenario::builtin("bed-rest-90").unwrap();
        assert_eq!(b.phases[1].name, "bed-rest");
        assert_eq!(b.phases[1].load_scale.as_array(), [0.30, 0.10]);
        assert_eq!(b.total_days(), 14 + 90 + 180);
        let e = Scenario::builtin("earth-baseline").unwrap();
        assert_eq!(e.phases, [Phase::habitual("habitual", 365)]);
    }

    #[test]
    fn resolve_prefers_builtins_then_files_then_reports_unknown_names() {
        assert_eq!(
            Scenario::resolve("bed-rest-90").unwrap(),
            Scenario::builtin("bed-rest-90").unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, with_days("3")).unwrap();
        let s = Scenario::resolve(path.to_str().unwrap()).unwrap();
        assert_eq!(s.phases, [Phase::habitual("p", 3)]);
        let e = Scenario::resolve("spacefligt-215").unwrap_err();
        assert!(matches!(e, ScenarioError::Unknown { .. }), "{e}");
        assert!(e.to_string().contains("spaceflight-215"), "{e}");
    }

    #[test]
    fn phase_at_maps_boundary_days_to_the_right_phase() {
        let s = Scenario::builtin("spaceflight-215").unwrap();
        assert_eq!(s.total_days(), 14 + 215 + 365);
        assert_eq!(s.phase_starts(), [0, 14, 229]);
        let idx = |day| s.phase_at(day).map(|(i, _)| i);
        assert_eq!(idx(0), Some(0));
        assert_eq!(idx(13), Some(0));
        assert_eq!(idx(14), Some(1));
        assert_eq!(idx(228), Some(1));
        assert_eq!(idx(229), Some(2));
        assert_eq!(idx(593), Some(2));
        assert_eq!(idx(594), None);
        assert_eq!(idx(u32::MAX), None);
        assert_eq!(s.phase_at(14).unwrap().1.name, "microgravity");
    }

    #[test]
    fn table_form_of_load_scale_and_defaults_are_accepted() {
        let text = "name = \"t\"\n[[phase]]\nname = \"a\"\ndays = 0x10\n[phase.load_scale]\n\
                    flexion = 2\n[[phase]]\nname = \"b\"\ndays = 1_000\npth_scale = 2.5\n";
        let s = Scenario::from_toml_str(text, "t").unwrap();
        assert_eq!(s.description, "");
        assert_eq!(s.phases[0].days, 16);
        assert_eq!(s.phases[0].load_scale.as_array(), [1.0, 2.0]);
        assert_eq!(s.phases[0].pth_scale, 1.0);
        assert_eq!(s.phases[1].days, 1000);
        assert_eq!(s.phases[1].load_scale, LoadScale::HABITUAL);
        assert_eq!(s.phases[1].pth_scale, 2.5);
    }

    #[test]
    fn zero_days_is_rejected_with_its_line_and_column() {
        let (line, column, reason, shown) = reject(&with_days("0"));
        assert_eq!((line, column), (Some(5), Some(8)));
        assert_eq!(reason, "days must be >= 1, got 0");
        assert_eq!(shown, "test.toml:5:8: days must be >= 1, got 0");
    }

    #[test]
    fn negative_days_are_rejected_with_their_line() {
        let (line, _, reason, _) = reject(&with_days("-3"));
        assert_eq!(line, Some(5));
        assert_eq!(reason, "days must be >= 1, got -3");
        let (line, _, reason, _) = reject(&with_days("-99999999999999999999"));
        assert_eq!(line, Some(5));
        assert!(reason.contains(">= 1"), "{reason}");
    }

    #[test]
    fn float_days_are_rejected_with_their_line() {
        let (line, _, reason, _) = reject(&with_days("2.5"));
        assert_eq!(line, Some(5));
        assert!(
            reason.contains("whole number") && reason.contains("2.5"),
            "{reason}"
        );
        let (line, _, reason, _) = reject(&with_days("\"14\""));
        assert_eq!(line, Some(5));
        assert!(
            reason.contains("integer") && reason.contains("string"),
            "{reason}"
        );
    }

    #[test]
    fn too_many_days_are_rejected_per_phase_and_in_total() {
        let (line, _, reason, _) = reject(&with_days("36501"));
        assert_eq!(line, Some(5));
        assert_eq!(reason, "days must be <= 36500, got 36501");
        let text = format!(
            "{}\n[[phase]]\nname = \"q\"\ndays = 36000\n",
            with_days("600")
        );
        let (line, _, reason, _) = reject(&text);
        assert_eq!(line, Some(9));
        assert!(
            reason.contains("36500") && reason.contains("36600"),
            "{reason}"
        );
    }

    #[test]
    fn missing_keys_and_missing_phases_are_rejected() {
        let (line, _, reason, _) = reject("name = \"t\"\n\n[[phase]]\nname = \"p\"\n");
        assert_eq!(line, Some(3), "points at the [[phase]] header");
        assert!(reason.contains("missing key `days`"), "{reason}");
        let (line, _, reason, _) = reject("name = \"t\"\n[[phase]]\ndays = 3\n");
        assert_eq!(line, Some(2));
        assert!(reason.contains("missing key `name`"), "{reason}");
        let (line, _, reason, shown) = reject("[[phase]]\nname = \"p\"\ndays = 3\n");
        assert_eq!(
            line,
            Some(1),
            "a missing top-level key is reported at line 1"
        );
        assert!(reason.contains("missing key `name`"), "{reason}");
        assert_eq!(shown, "test.toml:1: missing key `name`");
        let (_, _, reason, _) = reject("name = \"t\"\n");
        assert!(reason.starts_with("no phases"), "{reason}");
        let (line, _, reason, _) = reject("name = \"t\"\nphase = []\n");
        assert_eq!(line, Some(2));
        assert!(reason.starts_with("no phases"), "{reason}");
        let (line, _, reason, _) = reject("name = \"t\"\n[phase]\nname = \"p\"\ndays = 3\n");
        assert_eq!(line, Some(2));
        assert!(reason.contains("[[phase]]"), "{reason}");
    }

    #[test]
    fn unknown_top_level_key_is_rejected_with_its_line() {
        let (line, column, reason, _) = reject(&format!("{}\nauthor = \"x\"\n", with_days("1")));
        assert_eq!((line, column), (Some(7), Some(1)));
        assert!(reason.starts_with("unknown key `author`"), "{reason}");
    }

    #[test]
    fn unknown_key_in_phase_is_rejected_with_its_line() {
        let text = format!("{}durations = 3\n", with_days("1"));
        let (line, _, reason, _) = reject(&text);
        assert_eq!(line, Some(6));
        assert!(reason.starts_with("unknown key `durations`"), "{reason}");
    }

    #[test]
    fn unknown_key_in_load_scale_is_rejected_with_its_line() {
        let text = format!(
            "{}load_scale = {{ axial = 1.0, torsion = 0.5 }}\n",
            with_days("1")
        );
        let (line, column, reason, _) = reject(&text);
        assert_eq!((line, column), (Some(6), Some(29)));
        assert!(reason.starts_with("unknown key `torsion`"), "{reason}");
        let text = format!(
            "{}[phase.load_scale]\naxial = 1.0\nlateral = 0.5\n",
            with_days("1")
        );
        let (line, _, reason, _) = reject(&text);
        assert_eq!(line, Some(8));
        assert!(reason.starts_with("unknown key `lateral`"), "{reason}");
    }

    #[test]
    fn nan_and_infinite_scales_are_rejected() {
        for (lit, shown) in [
            ("nan", "nan"),
            ("-nan", "-nan"),
            ("inf", "inf"),
            ("-inf", "-inf"),
        ] {
            let text = format!("{}load_scale = {{ flexion = {lit} }}\n", with_days("1"));
            let (line, _, reason, _) = reject(&text);
            assert_eq!(line, Some(6));
            assert_eq!(
                reason,
                format!("load_scale.flexion must be finite, got {shown}")
            );
            let text = format!("{}pth_scale = {lit}\n", with_days("1"));
            let (line, _, reason, _) = reject(&text);
            assert_eq!(line, Some(6));
            assert_eq!(reason, format!("pth_scale must be finite, got {shown}"));
        }
    }

    #[test]
    fn out_of_range_scales_are_rejected() {
        let cases = [
            (
                "load_scale = { axial = -0.1 }",
                "load_scale.axial must be within [0, 10], got -0.1",
            ),
            (
                "load_scale = { flexion = 10.5 }",
                "load_scale.flexion must be within [0, 10], got 10.5",
            ),
            ("pth_scale = 0", "pth_scale must be within (0, 100], got 0"),
            (
                "pth_scale = -1.0",
                "pth_scale must be within (0, 100], got -1.0",
            ),
            (
                "pth_scale = 100.5",
                "pth_scale must be within (0, 100], got 100.5",
            ),
            (
                "load_scale = 0.5",
                "load_scale must be a table such as { axial = 1.0, flexion = 1.0 }, got float",
            ),
            (
                "load_scale = { axial = \"low\" }",
                "load_scale.axial must be a number, got string",
            ),
        ];
        for (line6, expected) in cases {
            let (line, _, reason, _) = reject(&format!("{}{line6}\n", with_days("1")));
            assert_eq!(line, Some(6), "{line6}");
            assert_eq!(reason, expected);
        }
        // The limits themselves are allowed.
        let text = format!(
            "{}load_scale = {{ axial = 0, flexion = 10 }}\npth_scale = 100\n",
            with_days("1")
        );
        Scenario::from_toml_str(&text, "t").unwrap();
    }

    #[test]
    fn bad_phase_names_are_rejected() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for (name, expected) in [
            ("", "phase name must not be empty"),
            ("  ", "phase name must not be empty"),
            (
                long.as_str(),
                "phase name must be at most 64 characters, got 65",
            ),
            ("a\\tb", "phase name must not contain control characters"),
        ] {
            let text = format!("name = \"t\"\n[[phase]]\ndays = 1\nname = \"{name}\"\n");
            let (line, column, reason, _) = reject(&text);
            assert_eq!((line, column), (Some(4), Some(8)));
            assert_eq!(reason, expected);
        }
        let ok = "é".repeat(MAX_NAME_LEN);
        Scenario::from_toml_str(
            &format!("name = \"t\"\n[[phase]]\ndays = 1\nname = \"{ok}\"\n"),
            "t",
        )
        .unwrap();
    }

    #[test]
    fn toml_syntax_errors_report_their_line() {
        let (line, _, reason, _) = reject("name = \"t\"\n[[phase]]\nname = \"p\"\ndays = \n");
        assert_eq!(line, Some(4));
        assert!(reason.starts_with("TOML syntax error"), "{reason}");
        let (line, _, reason, _) = reject("name = \"t\"\nname = \"u\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(reason, "TOML syntax error: duplicate key `name`");
    }

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "ab\nçd\r\nx";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2)); // after the two-byte `ç`
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 100), (3, 2));
    }

    #[test]
    fn validate_applies_the_parse_rules_without_line_numbers() {
        let good = Scenario::builtin("bed-rest-90").unwrap();
        good.validate().unwrap();
        let mut s = good.clone();
        s.phases[1].days = 0;
        let e = s.validate().unwrap_err();
        assert_eq!(e.line(), None);
        assert_eq!(
            e.to_string(),
            "scenario `bed-rest-90`: phase 2 `bed-rest`: days must be >= 1, got 0"
        );
        let mut s = good.clone();
        s.phases[0].load_scale.flexion = f64::NAN;
        assert!(
            s.validate()
                .unwrap_err()
                .reason()
                .unwrap()
                .contains("finite")
        );
        let mut s = good.clone();
        s.phases[2].pth_scale = 0.0;
        assert!(s.validate().unwrap_err().to_string().contains("pth_scale"));
        let mut s = good.clone();
        s.phases[2].days = MAX_DAYS;
        assert!(s.validate().unwrap_err().to_string().contains("add up"));
        let mut s = good.clone();
        s.phases.clear();
        assert!(s.validate().unwrap_err().to_string().contains("no phases"));
        let mut s = good;
        s.name = String::new();
        assert!(s.validate().is_err());
    }

    #[test]
    fn load_of_a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.toml");
        let e = Scenario::load(&path).unwrap_err();
        match &e {
            ScenarioError::Io { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an Io error, got {other}"),
        }
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn load_errors_name_the_file_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, with_days("0")).unwrap();
        let e = Scenario::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}:5:8: days must be >= 1, got 0", path.display())
        );
    }

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let mut s = Scenario::builtin("spaceflight-215").unwrap();
        s.description = "quotes \" and 'apostrophes', a\nnewline, tab\t and ünïcode".into();
        s.phases[1].pth_scale = 1.25;
        s.phases[1].load_scale.axial = 0.1 + 0.2; // not a short decimal
        s.save(&path).unwrap();
        assert_eq!(Scenario::load(&path).unwrap(), s);

        // Overwriting replaces the file, and leaves no temporary file behind.
        let other = Scenario::builtin("earth-baseline").unwrap();
        other.save(&path).unwrap();
        assert_eq!(Scenario::load(&path).unwrap(), other);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.toml"]);

        // A failed save (invalid scenario, or unwritable location) keeps the previous file.
        let before = std::fs::read(&path).unwrap();
        let mut bad = other.clone();
        bad.phases[0].days = 0;
        assert!(bad.save(&path).is_err());
        let missing_dir = dir.path().join("no/such/dir/s.toml");
        match other.save(&missing_dir) {
            Err(ScenarioError::Io { path, .. }) => assert_eq!(path, missing_dir),
            r => panic!("expected an Io error, got {r:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let text = format!("\u{feff}{}", with_days("2"));
        assert_eq!(Scenario::from_toml_str(&text, "t").unwrap().total_days(), 2);
    }
}
