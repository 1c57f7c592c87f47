//! What the unit tests share: which test services the run provides.

/// The value of `var`, the variable that points the contract suites at the test service `name`
/// (`postgres`, `s3`, `azure`, `gcs`). `FILEGATE_TEST_EXPECT` lists the services the run provides
/// (`scripts/test.sh` sets it from what it started): an expected service whose variable is unset fails the
/// test, so a misconfigured run cannot pass by skipping; one not expected is left out, and the test says so.
pub fn service(name: &str, var: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.is_empty());
    let expected = std::env::var("FILEGATE_TEST_EXPECT").is_ok_and(|list| list.split_whitespace().any(|s| s == name));
    match value {
        None if expected => panic!("FILEGATE_TEST_EXPECT names {name}, but {var} is not set"),
        None => eprintln!("{name} left out: {var} is not set (and FILEGATE_TEST_EXPECT does not name it)"),
        Some(_) => {}
    }
    value
}
