//! Names: normalising them for comparison, and the nicknames sources record in place of formal given names.

/// Lower case, trimmed, with accents kept: `Zoë` and `Zoe` differ by one character, which Jaro-Winkler forgives.
pub fn normalise(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether one (normalised) given name is a known nickname of the other.
pub fn are_nicknames(a: &str, b: &str) -> bool {
    NICKNAMES
        .iter()
        .any(|&(formal, nick)| (a == formal && b == nick) || (a == nick && b == formal))
}

/// Formal given names and the nicknames sources record instead.
const NICKNAMES: &[(&str, &str)] = &[
    ("william", "bill"),
    ("william", "will"),
    ("william", "liam"),
    ("robert", "bob"),
    ("robert", "rob"),
    ("elizabeth", "beth"),
    ("elizabeth", "liz"),
    ("elizabeth", "lizzie"),
    ("thomas", "tom"),
    ("james", "jim"),
    ("james", "jamie"),
    ("alexander", "alex"),
    ("alexandra", "alex"),
    ("benjamin", "ben"),
    ("charlotte", "charlie"),
    ("charles", "charlie"),
    ("daniel", "dan"),
    ("edward", "ted"),
    ("edward", "eddie"),
    ("katherine", "kate"),
    ("katherine", "katie"),
    ("margaret", "maggie"),
    ("matthew", "matt"),
    ("michael", "mike"),
    ("nicholas", "nick"),
    ("olivia", "liv"),
    ("rebecca", "becky"),
    ("samuel", "sam"),
    ("samantha", "sam"),
    ("victoria", "tori"),
    ("joseph", "joe"),
    ("jessica", "jess"),
    ("christopher", "chris"),
    ("abigail", "abbie"),
    ("isabella", "bella"),
    ("amelia", "millie"),
    ("harriet", "hattie"),
    ("frederick", "freddie"),
    ("henry", "harry"),
    ("jacob", "jake"),
    ("abigail", "abby"),
    ("alexander", "sandy"),
    ("alexandra", "sasha"),
    ("daniel", "danny"),
    ("edward", "ed"),
    ("eleanor", "ellie"),
    ("florence", "flo"),
    ("frederick", "fred"),
    ("jennifer", "jenny"),
    ("jonathan", "jon"),
    ("josephine", "josie"),
    ("margaret", "peggy"),
    ("michael", "mick"),
    ("richard", "dick"),
    ("richard", "rick"),
    ("robert", "bobby"),
    ("theodore", "teddy"),
    ("theodore", "theo"),
    ("thomas", "tommy"),
    ("victoria", "vicky"),
    ("william", "billy"),
];
