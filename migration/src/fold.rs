//! The folding that full-text search compares: one definition for the stored text
//! (`name_folded`, `description_folded`) and for the words of a search, so SQLite and
//! PostgreSQL find the same products in every script.
//!
//! It lives in the migration crate because a migration fills the folded columns of existing
//! rows; the server writes them with every change through the same function. Changing it needs
//! a migration that folds the stored text again.

use unicode_normalization::UnicodeNormalization;

/// `text` as search compares it: compatibility forms unfolded (full-width letters, ligatures,
/// superscripts), lower-cased, accents and other optional marks removed (Latin, Greek,
/// Cyrillic diacritics, Hebrew points, Arabic harakat), the letters that carry their accent
/// inside written as their base (`ß` → `ss`, `ø` → `o`, `ł` → `l`, `æ` → `ae`, `œ` → `oe`,
/// `ð`/`đ` → `d`, `þ` → `th`, `ı` → `i`, final `ς` → `σ`), then recomposed (NFC) so that
/// scripts whose marks are part of the letter (Hangul, kana voicing, Indic vowel signs) keep
/// them.
#[must_use]
pub fn search_fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.nfkd() {
        for lower in c.to_lowercase() {
            if is_optional_mark(lower) {
                continue;
            }
            match lower {
                'ß' => folded.push_str("ss"),
                'æ' => folded.push_str("ae"),
                'œ' => folded.push_str("oe"),
                'þ' => folded.push_str("th"),
                'ø' => folded.push('o'),
                'ł' => folded.push('l'),
                'đ' | 'ð' => folded.push('d'),
                'ħ' => folded.push('h'),
                'ŧ' => folded.push('t'),
                'ı' => folded.push('i'),
                'ς' => folded.push('σ'),
                other => folded.push(other),
            }
        }
    }
    if folded.is_ascii() {
        folded
    } else {
        folded.nfc().collect()
    }
}

/// A mark (Unicode category M): part of a word, as SQLite's tokenizer is told
/// (`categories 'L* N* Co M*'`); after [`search_fold`] only marks that belong to a letter remain.
#[must_use]
pub fn is_mark(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

/// Marks a reader may leave out without changing the word: the combining diacritics shared by
/// Latin, Greek and Cyrillic, Hebrew points and Arabic harakat. Marks that are part of a letter
/// (kana voicing, Indic vowel signs and viramas) are not in this list.
fn is_optional_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{0591}'..='\u{05BD}'
        | '\u{05BF}'
        | '\u{05C1}'..='\u{05C2}'
        | '\u{05C4}'..='\u{05C5}'
        | '\u{05C7}'
        | '\u{064B}'..='\u{065F}'
        | '\u{0670}')
}

#[cfg(test)]
mod tests {
    use super::search_fold;

    #[test]
    fn latin_accents_and_case_fold_away() {
        assert_eq!(search_fold("Crème BRÛLÉE"), "creme brulee");
        assert_eq!(
            search_fold("Ångström façade naïve"),
            "angstrom facade naive"
        );
        // Decomposed input folds like precomposed input.
        assert_eq!(search_fold("Cre\u{0300}me"), search_fold("Crème"));
    }

    #[test]
    fn letters_with_their_accent_inside_fold_to_their_base() {
        assert_eq!(search_fold("Straße STRASSE ẞ"), "strasse strasse ss");
        assert_eq!(search_fold("Smørrebrød Øl"), "smorrebrod ol");
        assert_eq!(search_fold("Łódź"), "lodz");
        assert_eq!(search_fold("Æble Œuvre"), "aeble oeuvre");
        assert_eq!(search_fold("Þór Đurđevac Ðe"), "thor durdevac de");
        assert_eq!(search_fold("Iİıi"), "iiii");
    }

    #[test]
    fn greek_and_cyrillic_accents_fold_away() {
        assert_eq!(search_fold("Καφές ΚΑΦΈΣ"), "καφεσ καφεσ");
        assert_eq!(search_fold("Ἀθῆναι"), "αθηναι");
        assert_eq!(search_fold("Ёлка"), "елка");
    }

    #[test]
    fn compatibility_forms_unfold() {
        assert_eq!(search_fold("ＴＥＡ　ｃｕｐ"), "tea cup");
        assert_eq!(search_fold("ﬁne ﬂour"), "fine flour");
        assert_eq!(search_fold("m²"), "m2");
    }

    #[test]
    fn marks_that_belong_to_the_letter_stay() {
        assert_eq!(search_fold("한국어"), "한국어");
        assert_eq!(search_fold("がっこう"), "がっこう");
        assert_eq!(search_fold("चाय"), "चाय");
        assert_ne!(search_fold("が"), search_fold("か"));
    }

    #[test]
    fn hebrew_points_and_arabic_harakat_fold_away() {
        assert_eq!(search_fold("שָׁלוֹם"), "שלום");
        assert_eq!(search_fold("كِتَاب"), "كتاب");
    }
}
