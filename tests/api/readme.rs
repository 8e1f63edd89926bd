//! The README's examples run against a real server, so they cannot rot.
//!
//! - Every ```graphql block runs in README order: sign-in blocks (`login`, `register`,
//!   `refreshToken`) anonymously, the rest as the admin the README's `create-admin` step
//!   creates. Each must succeed, unless the line before the fence says otherwise:
//!   `<!-- readme-test: as user, expect FORBIDDEN -->` runs it as a `USER` and expects that
//!   code. The placeholders `<refreshToken>`, `<accessToken>`, `<id>` and `<endCursor>` are
//!   filled in from earlier answers; any other placeholder fails the test.
//! - A ```json block marked `<!-- readme-test: response -->` must equal the previous GraphQL
//!   answer (without `locations`).
//! - The GraphQL documents in ```js and ```sh blocks must parse and validate.
//! - A ```text block marked `<!-- readme-test: output of ARGS -->` must be what
//!   `storefront ARGS` prints.
//! - Every command in the CLI table, and every `storefront …` / `cargo run -- …` in code, must
//!   exist (`--help` succeeds, with the options the table names).
//! - The configuration tables between `<!-- config:begin -->` and `<!-- config:end -->` in
//!   [`CONFIGURATION_DOC`] must be what `storefront config --markdown` prints, and name the
//!   variables `.env.example` names.

use std::{collections::BTreeSet, path::Path, process::Command};

use async_graphql::parser::{parse_query, types::Selection};
use serde_json::{Value, json};
use storefront::{accounts, auth::PasswordHasher};

use crate::helpers::*;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

fn readme() -> String {
    std::fs::read_to_string(README).expect("README.md is readable")
}

fn source(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Who runs a GraphQL block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    User,
    Admin,
}

/// What a `<!-- readme-test: … -->` comment on the line before a fence asks for.
#[derive(Default, Debug)]
struct Marker {
    caller: Option<Caller>,
    expect: Option<String>,
    response: bool,
    output_of: Option<String>,
}

/// A fenced code block of the README.
#[derive(Debug)]
struct Block {
    lang: String,
    code: String,
    /// 1-based line of the opening fence.
    line: usize,
    marker: Marker,
}

const MARKER_START: &str = "<!-- readme-test:";

fn parse_marker(text: &str, line: usize) -> Marker {
    let inner = text
        .trim()
        .strip_prefix(MARKER_START)
        .and_then(|t| t.strip_suffix("-->"))
        .unwrap_or_else(|| panic!("README.md:{line}: malformed marker {text:?}"));
    let mut marker = Marker::default();
    for directive in inner.split(',').map(str::trim) {
        let (word, rest) = directive.split_once(' ').unwrap_or((directive, ""));
        match (word, rest.trim()) {
            ("as", "anonymous") => marker.caller = Some(Caller::Anonymous),
            ("as", "user") => marker.caller = Some(Caller::User),
            ("as", "admin") => marker.caller = Some(Caller::Admin),
            ("expect", code) if !code.is_empty() => marker.expect = Some(code.to_owned()),
            ("response", "") => marker.response = true,
            ("output", rest) if rest.starts_with("of ") => {
                marker.output_of = Some(rest["of ".len()..].trim().to_owned());
            }
            _ => panic!("README.md:{line}: unknown readme-test directive {directive:?}"),
        }
    }
    marker
}

/// Every fenced block, with the marker on the line before it.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut markers_used = 0;
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            let indent = lines[i].len() - trimmed.len();
            let start = i;
            let marker = match start.checked_sub(1).map(|p| lines[p].trim()) {
                Some(prev) if prev.starts_with(MARKER_START) => {
                    markers_used += 1;
                    parse_marker(prev, start)
                }
                _ => Marker::default(),
            };
            let mut code = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let line = lines[i];
                let cut = line.len() - line.trim_start().len();
                code.push_str(&line[cut.min(indent)..]);
                code.push('\n');
                i += 1;
            }
            assert!(i < lines.len(), "README.md:{}: unclosed fence", start + 1);
            blocks.push(Block {
                lang: lang.trim().to_owned(),
                code,
                line: start + 1,
                marker,
            });
        }
        i += 1;
    }
    let markers = lines
        .iter()
        .filter(|l| l.trim().starts_with(MARKER_START))
        .count();
    assert_eq!(
        markers, markers_used,
        "every readme-test marker must be on the line right before a fence"
    );
    blocks
}

/// The rows of the first table in the section headed `heading`, as cells.
fn table_rows(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no `## {heading}` section"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The first `code span` of a table cell.
fn first_code_span(cell: &str) -> &str {
    cell.split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no code span in {cell:?}"))
}

// ---------------------------------------------------------------------------------------------
// GraphQL documents

/// The top-level definitions of a document, in order.
fn definitions(document: &str) -> Vec<&str> {
    let bytes = document.as_bytes();
    let mut definitions = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                start.get_or_insert(i);
                if document[i..].starts_with("\"\"\"") {
                    let end = document[i + 3..]
                        .find("\"\"\"")
                        .expect("closed block string");
                    i += end + 6;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                continue;
            }
            b'{' | b'(' | b'[' => {
                start.get_or_insert(i);
                depth += 1;
            }
            b'}' | b')' | b']' => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced brackets in\n{document}");
                if depth == 0 && bytes[i] == b'}' {
                    definitions.push(document[start.take().unwrap()..=i].trim());
                }
            }
            b if b.is_ascii_whitespace() || b == b',' => {}
            _ => {
                start.get_or_insert(i);
            }
        }
        i += 1;
    }
    assert!(
        depth == 0 && start.is_none(),
        "unbalanced document:\n{document}"
    );
    definitions
}

/// Each operation of a README block as a document of its own, with the block's fragments.
fn operations(block: &str) -> Vec<String> {
    let (fragments, operations): (Vec<&str>, Vec<&str>) = definitions(block)
        .into_iter()
        .partition(|d| d.starts_with("fragment"));
    operations
        .into_iter()
        .map(|op| {
            let mut document = op.to_owned();
            for fragment in &fragments {
                document.push('\n');
                document.push_str(fragment);
            }
            document
        })
        .collect()
}

/// What the test needs to know about a one-operation document.
struct Shape {
    root_fields: Vec<String>,
    has_variables: bool,
}

fn shape(document: &str, at: &str) -> Shape {
    let parsed =
        parse_query(document).unwrap_or_else(|e| panic!("{at}: does not parse: {e}\n{document}"));
    let mut operations = parsed.operations.iter();
    let (_, operation) = operations
        .next()
        .unwrap_or_else(|| panic!("{at}: no operation in\n{document}"));
    assert!(operations.next().is_none(), "{at}: one operation expected");
    let root_fields = operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => field.node.name.node.to_string(),
            _ => "<fragment>".to_owned(),
        })
        .collect();
    Shape {
        root_fields,
        has_variables: !operation.node.variable_definitions.is_empty(),
    }
}

/// Asserts that an answer is not a request error: the document parsed and validated.
fn assert_validated(response: &Value, at: &str, document: &str) {
    let request_errors: Vec<&Value> = response["errors"]
        .as_array()
        .map(|errors| errors.iter().filter(|e| e.get("path").is_none()).collect())
        .unwrap_or_default();
    assert!(
        response.get("data").is_some() && request_errors.is_empty(),
        "{at}: the document does not parse or validate: {response}\n{document}"
    );
}

// ---------------------------------------------------------------------------------------------
// Running the README's GraphQL

/// The accounts and values the README's blocks refer to.
struct Walk<'a> {
    app: &'a TestApp,
    admin_username: String,
    admin_password: String,
    admin_access: Option<String>,
    admin_refresh: Option<String>,
    user_access: Option<String>,
    product_id: Option<String>,
    end_cursor: Option<String>,
    /// The line of the last graphql block run, and its answer.
    last_response: Option<(usize, Value)>,
}

impl Walk<'_> {
    async fn sign_in_admin(&mut self) {
        let r = self
            .app
            .gql(
                "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken refreshToken } }",
                json!({"u": self.admin_username, "p": self.admin_password}),
                None,
            )
            .await;
        assert_no_errors(&r);
        self.admin_access = r["data"]["login"]["accessToken"]
            .as_str()
            .map(str::to_owned);
        self.admin_refresh = r["data"]["login"]["refreshToken"]
            .as_str()
            .map(str::to_owned);
    }

    async fn admin_access(&mut self) -> String {
        if self.admin_access.is_none() {
            self.sign_in_admin().await;
        }
        self.admin_access.clone().unwrap()
    }

    async fn admin_refresh(&mut self) -> String {
        if self.admin_refresh.is_none() {
            self.sign_in_admin().await;
        }
        // A refresh token works once: the block spends it.
        self.admin_refresh.take().unwrap()
    }

    async fn user_access(&mut self) -> String {
        if self.user_access.is_none() {
            self.user_access = Some(
                self.app
                    .register("readme_user", "readme user passphrase")
                    .await,
            );
        }
        self.user_access.clone().unwrap()
    }

    async fn product_id(&mut self) -> String {
        if self.product_id.is_none() {
            let admin = self.admin_access().await;
            self.product_id = Some(self.app.create_product(&admin, "README jug", "9.99").await);
        }
        self.product_id.clone().unwrap()
    }

    /// Replaces every `<placeholder>` the README uses; any other is an error.
    async fn fill_in(&mut self, document: &str, at: &str) -> String {
        let mut filled = String::new();
        let mut rest = document;
        while let Some(open) = rest.find('<') {
            filled.push_str(&rest[..open]);
            let close = rest[open..]
                .find('>')
                .map(|c| open + c)
                .unwrap_or_else(|| panic!("{at}: stray `<` in\n{document}"));
            let value = match &rest[open + 1..close] {
                "refreshToken" => self.admin_refresh().await,
                "accessToken" => self.admin_access().await,
                "id" => self.product_id().await,
                "endCursor" => self
                    .end_cursor
                    .clone()
                    .unwrap_or_else(|| panic!("{at}: `<endCursor>` before any products page")),
                other => panic!("{at}: unknown placeholder <{other}>: teach tests/api/readme.rs"),
            };
            filled.push_str(&value);
            rest = &rest[close + 1..];
        }
        filled.push_str(rest);
        filled
    }

    /// Runs one operation of a README block and checks its answer.
    async fn run(&mut self, document: &str, marker: &Marker, line: usize) {
        let at = &format!("README.md:{line}");
        let Shape {
            root_fields,
            has_variables,
        } = shape(document, at);
        assert!(
            !has_variables,
            "{at}: README graphql examples must not declare variables (nothing supplies them)"
        );
        let signs_in = root_fields
            .iter()
            .all(|f| matches!(f.as_str(), "login" | "register" | "refreshToken"));
        let caller = marker.caller.unwrap_or(if signs_in {
            Caller::Anonymous
        } else {
            Caller::Admin
        });
        let document = self.fill_in(document, at).await;
        let token = match caller {
            Caller::Anonymous => None,
            Caller::User => Some(self.user_access().await),
            Caller::Admin => Some(self.admin_access().await),
        };
        let response = self.app.gql(&document, json!({}), token.as_deref()).await;
        assert_validated(&response, at, &document);
        match &marker.expect {
            Some(code) => {
                let codes = codes(&response);
                assert!(
                    !codes.is_empty() && codes.iter().all(|c| c == code),
                    "{at}: expected {code}, got {response}\n{document}"
                );
            }
            None => {
                assert!(
                    response.get("errors").is_none() && !response["data"].is_null(),
                    "{at}: the example fails: {response}\n{document}"
                );
            }
        }
        self.remember(&response, &root_fields, caller);
        self.last_response = Some((line, response));
    }

    /// Keeps what later blocks refer to.
    fn remember(&mut self, response: &Value, root_fields: &[String], caller: Caller) {
        let data = &response["data"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        for payload in [&data["login"], &data["refreshToken"]] {
            if let Some(access) = text(&payload["accessToken"]) {
                self.admin_access = Some(access);
            }
            if let Some(refresh) = text(&payload["refreshToken"]) {
                self.admin_refresh = Some(refresh);
            }
        }
        if let Some(access) = text(&data["register"]["accessToken"]) {
            self.user_access = Some(access);
        }
        if let Some(id) = text(&data["createProduct"]["id"]) {
            self.product_id = Some(id);
        }
        if let Some(cursor) = text(&data["products"]["pageInfo"]["endCursor"]) {
            self.end_cursor = Some(cursor);
        }
        if data.get("deleteProduct").is_some_and(|v| !v.is_null()) {
            self.product_id = None;
        }
        if root_fields
            .iter()
            .any(|f| f == "logout" || f == "logoutAll")
        {
            match caller {
                Caller::Admin => {
                    self.admin_access = None;
                    self.admin_refresh = None;
                }
                Caller::User => self.user_access = None,
                Caller::Anonymous => {}
            }
        }
    }
}

/// The username and password of the README's `create-admin` step.
fn readme_admin(blocks: &[Block]) -> (String, String) {
    let line = blocks
        .iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| b.code.lines())
        .find(|l| l.contains("ADMIN_PASSWORD='") && l.contains("create-admin"))
        .expect("the README creates an admin with ADMIN_PASSWORD='…' … create-admin");
    let password = line
        .split("ADMIN_PASSWORD='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    let username = line
        .split("--username")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("create-admin --username NAME");
    (username.to_owned(), password.to_owned())
}

/// Removes `locations` from every error, as the README's examples do.
fn without_locations(mut response: Value) -> Value {
    if let Some(errors) = response["errors"].as_array_mut() {
        for error in errors {
            if let Some(error) = error.as_object_mut() {
                error.remove("locations");
            }
        }
    }
    response
}

#[tokio::test]
async fn readme_graphql_examples_run_and_answer_as_shown() {
    let markdown = readme();
    let blocks = fenced_blocks(&markdown);
    let app = spawn_app().await;
    let (admin_username, admin_password) = readme_admin(&blocks);
    let hasher = PasswordHasher::new(1).await.unwrap();
    accounts::create_or_promote_admin(
        &app.state.db,
        &hasher,
        &admin_username,
        admin_password.clone(),
    )
    .await
    .expect("the README's admin password follows the password rules");

    let mut walk = Walk {
        app: &app,
        admin_username,
        admin_password,
        admin_access: None,
        admin_refresh: None,
        user_access: None,
        product_id: None,
        end_cursor: None,
        last_response: None,
    };
    let mut ran = 0;
    let mut compared = 0;
    for block in &blocks {
        let at = format!("README.md:{}", block.line);
        match block.lang.as_str() {
            "graphql" => {
                assert!(
                    !block.marker.response && block.marker.output_of.is_none(),
                    "{at}: misplaced marker"
                );
                let operations = operations(&block.code);
                assert!(!operations.is_empty(), "{at}: empty graphql block");
                for operation in operations {
                    walk.run(&operation, &block.marker, block.line).await;
                    ran += 1;
                }
            }
            "json" if block.marker.response => {
                let (line, actual) = walk.last_response.take().unwrap_or_else(|| {
                    panic!("{at}: a response marker needs a graphql block before it")
                });
                let shown: Value = serde_json::from_str(&block.code)
                    .unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                assert_eq!(
                    without_locations(actual),
                    shown,
                    "{at}: the answer to the block at README.md:{line} differs from the README"
                );
                compared += 1;
            }
            _ => assert!(
                block.marker.caller.is_none()
                    && block.marker.expect.is_none()
                    && !block.marker.response,
                "{at}: graphql markers belong before graphql blocks"
            ),
        }
    }
    assert!(ran >= 10, "only {ran} README operations found");
    assert!(compared >= 3, "only {compared} README responses compared");
}

// ---------------------------------------------------------------------------------------------
// GraphQL inside the JavaScript and shell examples

/// The template literals (`…`) of JavaScript code, skipping comments and other strings.
fn js_template_literals(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            i += code[i..].find('\n').unwrap_or(code.len() - i);
        } else if bytes[i..].starts_with(b"/*") {
            i += code[i..].find("*/").expect("closed comment") + 2;
        } else if matches!(bytes[i], b'\'' | b'"' | b'`') {
            let quote = bytes[i];
            let start = i + 1;
            i += 1;
            while i < bytes.len() && bytes[i] != quote {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            if quote == b'`' {
                literals.push(code[start..i].to_owned());
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    literals
}

/// The `"query":"…"` JSON strings and `query=…` URL parameters of shell examples.
fn sh_queries(code: &str) -> Vec<String> {
    let mut queries = Vec::new();
    for (i, _) in code.match_indices("\"query\":\"") {
        let start = i + "\"query\":".len();
        let bytes = code.as_bytes();
        let mut end = start + 1;
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        queries.push(serde_json::from_str(&code[start..=end]).expect("a JSON string"));
    }
    for (i, _) in code.match_indices("'query=") {
        let rest = &code[i + "'query=".len()..];
        queries.push(rest[..rest.find('\'').expect("closing quote")].to_owned());
    }
    queries
}

fn looks_like_graphql(text: &str) -> bool {
    let text = text.trim_start();
    ["query", "mutation", "subscription", "fragment", "{"]
        .iter()
        .any(|start| text.starts_with(start))
}

#[tokio::test]
async fn readme_graphql_in_code_examples_validates() {
    let markdown = readme();
    let app = spawn_app().await;
    let mut checked = 0;
    for block in fenced_blocks(&markdown) {
        let documents = match block.lang.as_str() {
            "js" | "javascript" => js_template_literals(&block.code),
            "sh" => sh_queries(&block.code),
            _ => continue,
        };
        for document in documents.into_iter().filter(|d| looks_like_graphql(d)) {
            let at = format!("README.md:{}", block.line);
            assert!(
                !document.contains("${"),
                "{at}: GraphQL with interpolation cannot be checked"
            );
            shape(&document, &at);
            // Anonymous and without variables: the document is validated, but nothing that
            // needs a token or a variable runs.
            let response = app.gql(&document, json!({}), None).await;
            assert_validated(&response, &at, &document);
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "only {checked} GraphQL documents found in code examples"
    );
}

// ---------------------------------------------------------------------------------------------
// CLI

fn storefront(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("POLICY_DIR")
        .output()
        .expect("storefront runs")
}

fn assert_command_exists(words: &[String], options: &[String], at: &str) {
    let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
    args.push("--help");
    let out = storefront(&args);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{at}: `storefront {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    for option in options {
        assert!(
            help.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|word| word == option),
            "{at}: `storefront {}` has no {option}:\n{help}",
            words.join(" ")
        );
    }
}

fn is_command_word(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_lowercase())
        && token.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

/// The subcommands of `storefront …` and `cargo run … -- …` in a line of code.
fn commands_in(line: &str) -> Vec<Vec<String>> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut commands = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let binary = (*token == "storefront" || token.ends_with("/storefront"))
            && !token.contains('=')
            && !token.contains("://");
        let cargo_run = *token == "--" && tokens[..i].windows(2).any(|w| w == ["cargo", "run"]);
        if binary || cargo_run {
            let words: Vec<String> = tokens[i + 1..]
                .iter()
                .take_while(|t| is_command_word(t))
                .map(|t| (*t).to_owned())
                .collect();
            if !words.is_empty() {
                commands.push(words);
            }
        }
    }
    commands
}

#[test]
fn readme_cli_commands_exist() {
    let markdown = readme();

    let rows = table_rows(&markdown, "CLI");
    assert!(
        rows.len() >= 7,
        "the CLI table has only {} rows",
        rows.len()
    );
    for row in &rows {
        let usage = first_code_span(&row[0]);
        let words: Vec<String> = usage
            .split_whitespace()
            .take_while(|t| is_command_word(t))
            .map(str::to_owned)
            .collect();
        let options: Vec<String> = usage
            .split_whitespace()
            .map(|t| t.trim_matches(|c| c == '[' || c == ']'))
            .filter(|t| t.starts_with("--"))
            .map(str::to_owned)
            .collect();
        assert!(!words.is_empty(), "CLI table: no command in {usage:?}");
        assert_command_exists(&words, &options, &format!("CLI table row `{usage}`"));
    }

    // `storefront …` in code spans and shell blocks.
    let mut mentioned = BTreeSet::new();
    let blocks = fenced_blocks(&markdown);
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        for line in block.code.lines() {
            mentioned.extend(commands_in(line));
        }
    }
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            for span in line.split('`').skip(1).step_by(2) {
                mentioned.extend(commands_in(span));
            }
        }
    }
    assert!(mentioned.len() >= 5, "only {mentioned:?} found");
    for words in &mentioned {
        assert_command_exists(words, &[], &format!("`storefront {}`", words.join(" ")));
    }

    // Output shown in the README.
    for block in blocks.iter().filter(|b| b.marker.output_of.is_some()) {
        let args = block.marker.output_of.as_deref().unwrap();
        let out = storefront(&args.split_whitespace().collect::<Vec<_>>());
        assert!(out.status.success(), "storefront {args} failed");
        let actual: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        let shown: Vec<String> = block
            .code
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        assert_eq!(
            actual, shown,
            "README.md:{}: `storefront {args}` prints something else",
            block.line
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The file that holds the configuration tables, relative to the crate.
const CONFIGURATION_DOC: &str = "README.md";

#[test]
fn configuration_tables_are_what_storefront_config_markdown_prints() {
    let doc = source(CONFIGURATION_DOC);
    let (begin, end) = ("<!-- config:begin -->\n", "<!-- config:end -->");
    let region = doc
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(region, _)| region)
        .unwrap_or_else(|| panic!("{CONFIGURATION_DOC} has no {begin:?} … {end:?} region"));
    let out = storefront(&["config", "--markdown"]);
    assert!(out.status.success(), "storefront config --markdown failed");
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    if region != printed {
        let (shown, wanted): (Vec<_>, Vec<_>) =
            (region.lines().collect(), printed.lines().collect());
        let line = (0..shown.len().max(wanted.len()))
            .find(|&i| shown.get(i) != wanted.get(i))
            .unwrap_or(0);
        panic!(
            "the configuration tables in {CONFIGURATION_DOC} differ from `storefront config \
             --markdown` (paste its output between the markers); line {} of the region is\n  \
             {:?}\nwhere the command prints\n  {:?}",
            line + 1,
            shown.get(line),
            wanted.get(line)
        );
    }

    let table: BTreeSet<String> = printed
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| first_code_span(line).to_owned())
        .collect();
    assert!(
        table.len() >= 30,
        "only {} variables in the tables",
        table.len()
    );
    let example: BTreeSet<String> = source(".env.example")
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (name, _) = line.split_once('=')?;
            (!name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect();
    assert_eq!(
        example, table,
        ".env.example and the configuration tables name different variables"
    );
}
