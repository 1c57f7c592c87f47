//! A setting as the operator wrote it: parsed, or the reason it could not be, with the name it was set by.
//!
//! clap stops at the first value its parser refuses, and names it by its flag (`--default-ttl-seconds`)
//! even when it came from `FILEGATE_DEFAULT_TTL_SECONDS`: one bad value hid every other problem, and the
//! operator was told of a flag they never typed. Typed settings are therefore read by [`lenient`], which
//! never refuses: [`Config::from_args`](super::Config::from_args) collects each failure with the others
//! ([`super::Problems`]), under the name the operator used.

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::TypedValueParser;

/// A value read from the command line or the environment.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    value: Result<T, String>,
    name: String,
}

impl<T: Clone> Setting<T> {
    /// The value, or `None` with why not (the problem names the setting).
    pub fn get(&self) -> Result<T, String> {
        self.value.clone()
    }

    /// The name the operator set it by: its variable, or its flag.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A setting made in code (tests, the operator commands' own defaults).
    pub fn of(value: T, name: &str) -> Self {
        Self { value: Ok(value), name: name.to_owned() }
    }
}

/// What kind of value a setting takes, for the sentence that refuses a bad one.
pub trait Described: FromStr {
    const WHAT: &'static str;
}

impl Described for u64 {
    const WHAT: &'static str = "a whole number (0 or more)";
}

impl Described for u32 {
    const WHAT: &'static str = "a whole number (0 or more)";
}

impl Described for usize {
    const WHAT: &'static str = "a whole number (0 or more)";
}

impl Described for std::net::SocketAddr {
    const WHAT: &'static str = "an address and port (127.0.0.1:8080, [::]:8080)";
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`, as operators write them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl FromStr for Flag {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Self(true)),
            "false" | "0" | "no" | "off" => Ok(Self(false)),
            _ => Err(()),
        }
    }
}

impl Described for Flag {
    const WHAT: &'static str = "true or false";
}

/// The parser of a [`Setting`]: never an error, whatever the text.
pub fn lenient<T>() -> Lenient<T> {
    Lenient(PhantomData)
}

pub struct Lenient<T>(PhantomData<fn() -> T>);

impl<T> Clone for Lenient<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<T> TypedValueParser for Lenient<T>
where
    T: Described + Clone + Send + Sync + 'static,
{
    type Value = Setting<T>;

    fn parse_ref(&self, _: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<Setting<T>, clap::Error> {
        let name = name_used(arg, value);
        let text = value.to_string_lossy();
        let value = text.trim().parse::<T>().map_err(|_| format!("{name} is \"{}\", not {}", shorten(&text), T::WHAT));
        Ok(Setting { value, name })
    }
}

/// The name a value was given by: the variable when the environment holds this very value (or nothing set
/// it: a default is named by its variable, as the documentation names settings), else the flag.
fn name_used(arg: Option<&clap::Arg>, value: &OsStr) -> String {
    let Some(arg) = arg else { return "a setting".into() };
    let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
    let flag = arg.get_long().map(|long| format!("--{long}"));
    let from_env = env.as_ref().is_some_and(|name| std::env::var_os(name).as_deref() == Some(value));
    let is_default = arg.get_default_values().iter().any(|d| d.as_os_str() == value);
    match (env, flag) {
        (Some(env), _) if from_env || is_default => env,
        (_, Some(flag)) => flag,
        (Some(env), None) => env,
        (None, None) => arg.get_id().to_string(),
    }
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

impl<T: fmt::Display> fmt::Display for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Ok(value) => write!(f, "{value}"),
            Err(_) => f.write_str("(invalid)"),
        }
    }
}
