//! Every problem with the settings, collected rather than stopping at the first, so that an operator
//! fixes them in one round (`filegate config check`, and `serve` refusing to start).

use std::fmt;

use super::Setting;

#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Records `problem` unless `ok`.
    pub fn check(&mut self, ok: bool, problem: impl Into<String>) {
        if !ok {
            self.push(problem);
        }
    }

    /// The value, or `None` with its problem recorded.
    pub fn take<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.push(problem)).ok()
    }

    /// A setting's value; when it could not be read, its problem is recorded and a stand-in returned (the
    /// configuration fails anyway, after every other setting was checked too).
    pub fn value<T: Clone + Default>(&mut self, setting: &Setting<T>) -> T {
        self.take(setting.get()).unwrap_or_default()
    }

    /// An optional setting's value.
    pub fn optional<T: Clone + Default>(&mut self, setting: Option<&Setting<T>>) -> Option<T> {
        setting.and_then(|s| self.take(s.get()))
    }

    /// A number of at least `min`, named as the operator set it.
    pub fn at_least<T>(&mut self, setting: &Setting<T>, min: T) -> T
    where
        T: Clone + Default + PartialOrd + std::fmt::Display,
    {
        let Some(value) = self.take(setting.get()) else { return T::default() };
        self.check(value >= min, format!("{} must be at least {min}", setting.name()));
        value
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
