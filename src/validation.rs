//! Input rules. Each violation is a `BAD_USER_INPUT` naming the field; nothing is stored.

use crate::error::{AppError, AppResult};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const EMAIL_MAX: usize = 254;
pub const PRODUCT_NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 5000;
/// The longest `search` term, in characters (a product name is at most 200).
pub const SEARCH_MAX: usize = 200;
/// The highest price, in cents: 1,000,000,000.00.
pub const PRICE_MAX_CENTS: i64 = 1_000_000_000 * 100;

/// Checks a username and returns its normalized (lower-case) form, which is what uniqueness
/// is decided on.
///
/// # Errors
/// `BAD_USER_INPUT` on `username` unless it is 3–32 ASCII letters, digits, `_`, `.` or `-`.
pub fn username(username: &str) -> AppResult<String> {
    let len = username.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(AppError::bad_input(
            "username",
            format!("username must be {USERNAME_MIN} to {USERNAME_MAX} characters long"),
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(AppError::bad_input(
            "username",
            "username may contain only letters (a-z, A-Z), digits, `_`, `.` and `-`",
        ));
    }
    Ok(username.to_ascii_lowercase())
}

/// Characters of a password the strength estimate looks at: its cost grows with the length,
/// and a password whose first 48 characters are easy to guess is weak anyway
/// (docs/benchmarks.md#password-strength-the-first-48-characters).
pub const STRENGTH_CHARS: usize = 48;
/// The lowest zxcvbn score accepted: 3 is "safely unguessable" (more than 10^10 guesses).
pub const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Three;

/// What the account holder typed about themselves, which a password must not lean on: the
/// username, the email and the email's local part.
pub fn user_inputs(username: &str, email: Option<&str>) -> Vec<String> {
    let mut inputs = vec![username.to_owned()];
    if let Some(email) = email {
        inputs.push(email.to_owned());
        if let Some((local, _)) = email.rsplit_once('@') {
            inputs.push(local.to_owned());
        }
    }
    inputs
}

/// Checks a new password ([`password_strength`]) on the blocking pool: the estimate takes
/// milliseconds for long passwords in an unoptimized build.
///
/// # Errors
/// As [`password_strength`]; internal if the blocking pool fails.
pub async fn new_password(
    password: &str,
    field: &'static str,
    user_inputs: Vec<String>,
) -> AppResult<()> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || password_strength(&password, field, &user_inputs))
        .await
        .map_err(AppError::internal)?
}

/// Checks a new password: 8–128 characters, not one of the 10,000 most common passwords
/// (compared ignoring case), and hard to guess by zxcvbn's estimate (score 3 or more, knowing
/// the `user_inputs`). The password itself is never trimmed or changed.
///
/// # Errors
/// `BAD_USER_INPUT` on `field` when it breaks a rule, with zxcvbn's warning and suggestions.
pub fn password_strength(
    password: &str,
    field: &'static str,
    user_inputs: &[String],
) -> AppResult<()> {
    let len = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        return Err(AppError::bad_input(
            field,
            format!("password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"),
        ));
    }
    if is_common_password(password) {
        return Err(AppError::bad_input(
            field,
            "this password is too common; choose one that is harder to guess",
        ));
    }
    let seen: String = password.chars().take(STRENGTH_CHARS).collect();
    let inputs: Vec<&str> = user_inputs.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(&seen, &inputs);
    if estimate.score() < MIN_STRENGTH {
        let mut message = "this password is too easy to guess.".to_owned();
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                message.push_str(&format!(" {warning}"));
            }
            for suggestion in feedback.suggestions() {
                message.push_str(&format!(" {suggestion}"));
            }
        }
        return Err(AppError::bad_input(field, message));
    }
    Ok(())
}

/// Whether the password is on the list in `data/common-passwords.txt`, ignoring case.
pub fn is_common_password(password: &str) -> bool {
    static COMMON: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    COMMON
        .get_or_init(|| {
            include_str!("../data/common-passwords.txt")
                .lines()
                .filter(|line| !line.starts_with('#') && !line.is_empty())
                .collect()
        })
        .contains(password.to_lowercase().as_str())
}

/// Checks an email address and returns it with its normalized (lower-case) form.
///
/// # Errors
/// `BAD_USER_INPUT` on `email` unless it looks like `local@domain.tld`.
pub fn email(email: &str) -> AppResult<(String, String)> {
    let invalid = || {
        AppError::bad_input(
            "email",
            "email must be a valid address like name@example.com",
        )
    };
    if email.len() > EMAIL_MAX || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !(local_ok && domain_ok) {
        return Err(invalid());
    }
    Ok((email.to_owned(), email.to_lowercase()))
}

/// Checks a product name and returns it trimmed.
///
/// # Errors
/// `BAD_USER_INPUT` on `name` unless it is 1–200 characters after trimming, with no control
/// characters.
pub fn product_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    let len = name.chars().count();
    if !(1..=PRODUCT_NAME_MAX).contains(&len) {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1 to {PRODUCT_NAME_MAX} characters long (after trimming)"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Checks a `search` argument's length.
///
/// # Errors
/// `BAD_USER_INPUT` on `search` when longer than 200 characters (no product name could
/// contain it, and a long `LIKE` pattern is refused by SQLite).
pub fn search(search: &str) -> AppResult<()> {
    if search.chars().count() > SEARCH_MAX {
        return Err(AppError::bad_input(
            "search",
            format!("search must be at most {SEARCH_MAX} characters long"),
        ));
    }
    Ok(())
}

/// Checks a part of a product name to look for (`filter.nameContains`, and `search`, its
/// older name): as [`search`], and no control characters, which no name holds (PostgreSQL
/// refuses a NUL in text outright).
///
/// # Errors
/// `BAD_USER_INPUT` on `search` when too long or holding a control character.
pub fn name_fragment(fragment: &str) -> AppResult<()> {
    search(fragment)?;
    if fragment.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "search",
            "search must not contain control characters: no product name holds one",
        ));
    }
    Ok(())
}

/// Checks a product description.
///
/// # Errors
/// `BAD_USER_INPUT` on `description` when longer than 5000 characters or holding control
/// characters other than tab and line breaks.
pub fn description(description: &str) -> AppResult<()> {
    if description.chars().count() > DESCRIPTION_MAX {
        return Err(AppError::bad_input(
            "description",
            format!("description must be at most {DESCRIPTION_MAX} characters long"),
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AppError::bad_input(
            "description",
            "description must not contain control characters other than tabs and line breaks",
        ));
    }
    Ok(())
}

/// Parses a price such as `"19.99"` into cents.
///
/// # Errors
/// `BAD_USER_INPUT` on `price` unless it is a plain decimal number with at most 2 decimal
/// places, from 0 to 1,000,000,000.
pub fn price_cents(price: &str) -> AppResult<i64> {
    let invalid = |why: &str| AppError::bad_input("price", why.to_owned());
    if price.starts_with('-') {
        return Err(invalid("price must be 0 or more"));
    }
    let (whole, fraction) = price.split_once('.').unwrap_or((price, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (price.contains('.') && fraction.is_empty())
    {
        return Err(invalid("price must be a decimal number such as \"19.99\""));
    }
    if fraction.len() > 2 {
        return Err(invalid("price must have at most 2 decimal places"));
    }
    let whole = whole.trim_start_matches('0');
    let too_high = || invalid("price must be at most 1000000000");
    if whole.len() > 10 {
        return Err(too_high());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_high())?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let cents = whole * 100 + fraction;
    if cents > PRICE_MAX_CENTS {
        return Err(too_high());
    }
    Ok(cents)
}

/// Formats cents as a decimal string with two places: `1999` → `"19.99"`. Written digit by
/// digit: every price in a page is formatted, and `format!` cost about 1,000 instructions each.
pub fn format_cents(cents: i64) -> String {
    // i64::MIN has 19 digits, a point and a sign.
    let mut text = [0_u8; 22];
    let mut start = text.len();
    let mut rest = cents.unsigned_abs();
    let mut push = |byte: u8| {
        start -= 1;
        text[start] = byte;
    };
    let digit = |n: u64| b'0' + u8::try_from(n % 10).expect("a digit");
    push(digit(rest));
    push(digit(rest / 10));
    push(b'.');
    rest /= 100;
    loop {
        push(digit(rest));
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if cents < 0 {
        push(b'-');
    }
    std::str::from_utf8(&text[start..])
        .expect("ASCII digits")
        .to_owned()
}

/// Checks a stock level.
///
/// # Errors
/// `BAD_USER_INPUT` on `stock` when negative.
pub fn stock(stock: i32) -> AppResult<i32> {
    if stock < 0 {
        return Err(AppError::bad_input("stock", "stock must be 0 or more"));
    }
    Ok(stock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: AppError) -> &'static str {
        match err {
            AppError::BadUserInput { field, .. } => field,
            other => panic!("expected BadUserInput, got {other:?}"),
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(username("Dana.B-2_x").unwrap(), "dana.b-2_x");
        for bad in ["ab", &"a".repeat(33), "with space", "émile", "a@b", ""] {
            assert_eq!(field(username(bad).unwrap_err()), "username", "{bad}");
        }
        assert!(username(&"a".repeat(32)).is_ok());
    }

    fn strength(password: &str) -> AppResult<()> {
        password_strength(
            password,
            "password",
            &user_inputs("dana", Some("dana.b@example.com")),
        )
    }

    fn is_length_error(result: AppResult<()>) -> bool {
        matches!(result, Err(AppError::BadUserInput { message, .. }) if message.contains("8 to 128"))
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(is_length_error(strength("ééééééé"))); // 7 chars, 14 bytes
        assert!(!is_length_error(strength("éééééééé")));
        assert!(!is_length_error(strength(&"é".repeat(128))));
        assert!(is_length_error(strength(&"é".repeat(129))));
        assert!(strength("ébène, sûreté, çà et là").is_ok());
    }

    #[test]
    fn the_most_common_passwords_are_refused_ignoring_case() {
        for common in [
            "password",
            "12345678",
            "Password1",
            "QWERTYUIOP",
            "iloveyou",
        ] {
            assert!(is_common_password(common), "{common}");
            assert!(strength(common).is_err() || common.len() < 8);
        }
        assert!(!is_common_password("correct horse battery staple"));
        assert!(strength("correct horse battery staple").is_ok());
    }

    #[test]
    fn guessable_passwords_are_refused_with_zxcvbn_feedback() {
        for weak in [
            "password1234",
            "123456789012",
            "iloveyou123",
            "letmein12345",
            "qwertyuiop123",
            "aaaaaaaaaaaa",
            "dana.b2024!",
            "Dana.B@example.com",
            &format!("{}correct horse battery staple", "a".repeat(STRENGTH_CHARS)),
        ] {
            match strength(weak) {
                Err(AppError::BadUserInput { field, message }) => {
                    assert_eq!(field, "password");
                    assert!(
                        message.starts_with("this password is too easy to guess."),
                        "{message}"
                    );
                    assert!(message.len() > 40, "{weak}: feedback in {message:?}");
                }
                other => panic!("{weak}: {other:?}"),
            }
        }
        for strong in [
            "correct horse battery staple",
            "Tr0ub4dor&3 gallops",
            "orbit-velvet-cactus-42",
        ] {
            assert!(strength(strong).is_ok(), "{strong}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("Dana@Example.COM").unwrap(),
            ("Dana@Example.COM".to_owned(), "dana@example.com".to_owned())
        );
        for bad in [
            "",
            "plain",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@-x.com",
            "a@@x.com",
            "a..b@x.com",
        ] {
            assert_eq!(field(email(bad).unwrap_err()), "email", "{bad}");
        }
    }

    #[test]
    fn prices() {
        assert_eq!(price_cents("19.99").unwrap(), 1999);
        assert_eq!(price_cents("19.9").unwrap(), 1990);
        assert_eq!(price_cents("0").unwrap(), 0);
        assert_eq!(price_cents("1000000000").unwrap(), PRICE_MAX_CENTS);
        assert_eq!(price_cents("1000000000.00").unwrap(), PRICE_MAX_CENTS);
        for bad in [
            "-1",
            "1.999",
            "1000000000.01",
            "abc",
            "",
            ".5",
            "5.",
            "1e3",
            "99999999999999999999999",
            " 1",
            "1,00",
        ] {
            assert_eq!(field(price_cents(bad).unwrap_err()), "price", "{bad}");
        }
        assert_eq!(format_cents(1999), "19.99");
        assert_eq!(format_cents(5), "0.05");
        for (cents, text) in [
            (0, "0.00"),
            (10, "0.10"),
            (100, "1.00"),
            (100_000_000_000, "1000000000.00"),
            (-150, "-1.50"),
            (i64::MAX, "92233720368547758.07"),
            (i64::MIN, "-92233720368547758.08"),
        ] {
            assert_eq!(format_cents(cents), text);
        }
        for cents in (0..100_000).chain([123_456_789, 99_999_999_999]) {
            assert_eq!(
                format_cents(cents),
                format!("{}.{:02}", cents / 100, cents % 100)
            );
        }
    }

    #[test]
    fn product_names_are_trimmed() {
        assert_eq!(product_name("  Lamp ").unwrap(), "Lamp");
        assert!(product_name("   ").is_err());
        assert!(product_name(&"x".repeat(201)).is_err());
        assert!(product_name("a\u{0}b").is_err());
        assert!(description(&"x".repeat(5001)).is_err());
        assert!(description("line\nbreak").is_ok());
        assert!(description("nul\u{0}").is_err());
    }

    #[test]
    fn search_terms_are_at_most_200_characters() {
        assert!(search(&"é".repeat(200)).is_ok());
        assert_eq!(field(search(&"x".repeat(201)).unwrap_err()), "search");
    }
}
