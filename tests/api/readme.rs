//! The examples in the Markdown files run against a real server, so they cannot rot.
//!
//! The files are README.md and every other `.md` file of the repository (`docs/`, `clients/`;
//! not `target/`, `node_modules/`, hidden folders or `bench/results/`), README.md first, then by
//! path. What each fenced block must pass, by its language:
//!
//! - `graphql`: runs against one test server, in that order: sign-in blocks (`login`,
//!   `register`, `refreshToken`) anonymously, the rest as the admin the README's `create-admin`
//!   step creates. Each must succeed, unless the line before the fence says otherwise:
//!   `<!-- readme-test: as user, expect FORBIDDEN -->` runs it as a `USER` and expects that
//!   code. The placeholders `<refreshToken>`, `<accessToken>`, `<id>` and `<endCursor>` are
//!   filled in from earlier answers; any other placeholder fails the test.
//! - `json`: marked `<!-- readme-test: response -->`, it must equal the previous answer
//!   (without `locations`); marked `<!-- readme-test: post -->`, it is sent as the body of a
//!   `POST /graphql` as the admin, and the `response` block after it shows the answer (for a
//!   batch, the answer of each operation). Any other `json` block must parse.
//! - `js`: the GraphQL documents in its template literals must parse and validate (a block
//!   without one fails); subscriptions are sent over a WebSocket, as clients send them.
//! - `sh`: `bash -n` must accept it; the GraphQL in `"query":"…"` strings and `query=…`
//!   parameters must parse and validate; every `storefront …` / `cargo run -- …` command must
//!   exist (`--help` succeeds).
//! - `csv`: policy lines; with them added to a copy of `policies/`, `storefront policy check`
//!   must accept the folder.
//! - `text`: marked `<!-- readme-test: output of ARGS -->`, it must be what `storefront ARGS`
//!   prints.
//! - A block marked `<!-- readme-test: copy of PATH -->` must be the text of the file at PATH
//!   (relative to the repository), which a test runs: the client tests in `clients/` import the
//!   snippets the docs show. It is checked by its language too, unless also marked `not run`
//!   (Relay documents, whose directives only relay-compiler knows, are checked by it).
//! - A block marked `<!-- readme-test: not run -->` is only shown. Any other block fails
//!   `readme_every_markdown_example_is_checked`: nothing is skipped silently.
//!
//! Besides the blocks: every command in the CLI table (docs/operations.md) and every
//! `storefront …` in code spans exists, with the options the table names; the configuration
//! tables between `<!-- config:begin -->` and `<!-- config:end -->` in docs/configuration.md are
//! what `storefront config --markdown` prints and name the variables `.env.example` mentions; relative links between the Markdown files point at files and headings that exist.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use async_graphql::parser::{parse_query, types::Selection};
use serde_json::{Value, json};

use crate::kit::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn source(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Markdown file of the repository.
struct Doc {
    /// Relative to the repository, with `/` separators.
    path: String,
    text: String,
}

/// Folders, by name, that hold no documentation of ours.
const NOT_DOCS: &[&str] = &["target", "node_modules"];
/// Folders, by path, that hold no documentation of ours: benchmark output.
const NOT_DOCS_AT: &[&str] = &["bench/results"];

/// Every Markdown file of the repository, README.md first, then by path.
fn markdown_files() -> Vec<Doc> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let relative = path
                .strip_prefix(root())
                .expect("inside the repository")
                .to_string_lossy()
                .replace('\\', "/");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || NOT_DOCS.contains(&name.as_str())
                || NOT_DOCS_AT.contains(&relative.as_str())
            {
                continue;
            }
            if path.is_dir() {
                walk(&path, found);
            } else if name.ends_with(".md") {
                found.push(relative);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root(), &mut paths);
    paths.sort_by_key(|p| (p != "README.md", p.clone()));
    assert!(
        paths.first().is_some_and(|p| p == "README.md"),
        "no README.md"
    );
    paths
        .into_iter()
        .map(|path| Doc {
            text: source(&path),
            path,
        })
        .collect()
}

/// The Markdown file at `relative`.
fn doc(relative: &str) -> Doc {
    Doc {
        path: relative.to_owned(),
        text: source(relative),
    }
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
    post: bool,
    output_of: Option<String>,
    not_run: bool,
    /// The file, relative to the repository, whose text the block must be.
    copy_of: Option<String>,
}

/// A fenced code block of a Markdown file.
#[derive(Debug)]
struct Block {
    /// The file and the 1-based line of the opening fence, as `docs/api.md:12`.
    at: String,
    lang: String,
    code: String,
    marker: Marker,
}

const MARKER_START: &str = "<!-- readme-test:";

fn parse_marker(text: &str, at: &str) -> Marker {
    let inner = text
        .trim()
        .strip_prefix(MARKER_START)
        .and_then(|t| t.strip_suffix("-->"))
        .unwrap_or_else(|| panic!("{at}: malformed marker {text:?}"));
    let mut marker = Marker::default();
    for directive in inner.split(',').map(str::trim) {
        let (word, rest) = directive.split_once(' ').unwrap_or((directive, ""));
        match (word, rest.trim()) {
            ("as", "anonymous") => marker.caller = Some(Caller::Anonymous),
            ("as", "user") => marker.caller = Some(Caller::User),
            ("as", "admin") => marker.caller = Some(Caller::Admin),
            ("expect", code) if !code.is_empty() => marker.expect = Some(code.to_owned()),
            ("response", "") => marker.response = true,
            ("post", "") => marker.post = true,
            ("not", "run") => marker.not_run = true,
            ("copy", rest) if rest.starts_with("of ") => {
                marker.copy_of = Some(rest["of ".len()..].trim().to_owned());
            }
            ("output", rest) if rest.starts_with("of ") => {
                marker.output_of = Some(rest["of ".len()..].trim().to_owned());
            }
            _ => panic!("{at}: unknown readme-test directive {directive:?}"),
        }
    }
    marker
}

/// Every fenced block of a file, with the marker on the line before it.
fn fenced_blocks(doc: &Doc) -> Vec<Block> {
    let lines: Vec<&str> = doc.text.lines().collect();
    let mut blocks = Vec::new();
    let mut markers_used = 0;
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            let indent = lines[i].len() - trimmed.len();
            let start = i;
            let at = format!("{}:{}", doc.path, start + 1);
            let marker = match start.checked_sub(1).map(|p| lines[p].trim()) {
                Some(prev) if prev.starts_with(MARKER_START) => {
                    markers_used += 1;
                    parse_marker(prev, &at)
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
            assert!(i < lines.len(), "{at}: unclosed fence");
            blocks.push(Block {
                at,
                lang: lang.trim().to_owned(),
                code,
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
        "{}: every readme-test marker must be on the line right before a fence",
        doc.path
    );
    blocks
}

/// The fenced blocks of every Markdown file, in order.
fn all_blocks() -> Vec<Block> {
    markdown_files().iter().flat_map(fenced_blocks).collect()
}

/// The rows of the first table in the section headed `## {heading}`, as cells.
fn table_rows(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no `## {heading}` section"));
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

/// Each operation of a graphql block as a document of its own, with the block's fragments.
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
/// Whether `document` holds a subscription.
fn is_subscription(document: &str) -> bool {
    parse_query(document).is_ok_and(|document| {
        document
            .operations
            .iter()
            .any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Subscription)
    })
}

fn assert_validated(response: &Response, at: &str, document: &str) {
    let request_errors = response.errors.iter().filter(|e| e.path.is_none()).count();
    assert!(
        response.body.get("data").is_some() && request_errors == 0,
        "{at}: the document does not parse or validate: {response}\n{document}"
    );
}

// ---------------------------------------------------------------------------------------------
// Running the GraphQL blocks

/// The accounts and values the blocks refer to.
struct Walk<'a> {
    app: &'a TestApp,
    admin_username: String,
    admin_password: String,
    admin_access: Option<String>,
    admin_refresh: Option<String>,
    user_access: Option<String>,
    product_id: Option<String>,
    end_cursor: Option<String>,
    /// Where the last graphql block run (or json block sent) is, and its answer.
    last_response: Option<(String, Value)>,
}

impl Walk<'_> {
    async fn sign_in_admin(&mut self) {
        let admin = self
            .app
            .sign_in(&self.admin_username, &self.admin_password)
            .await;
        self.admin_access = Some(admin.token().to_owned());
        self.admin_refresh = Some(admin.refresh_token().to_owned());
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
            let user = self
                .app
                .user_with("readme_user", "readme user passphrase")
                .await;
            self.user_access = Some(user.token().to_owned());
        }
        self.user_access.clone().unwrap()
    }

    async fn product_id(&mut self) -> String {
        if self.product_id.is_none() {
            let admin = self.app.bearer(&self.admin_access().await);
            self.product_id = Some(admin.add_product("README jug", "9.99").await.id);
        }
        self.product_id.clone().unwrap()
    }

    /// Replaces every `<placeholder>` the examples use; any other is an error.
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

    /// Runs one operation of a graphql block and checks its answer.
    async fn run(&mut self, document: &str, marker: &Marker, at: &str) {
        let Shape {
            root_fields,
            has_variables,
        } = shape(document, at);
        assert!(
            !has_variables,
            "{at}: graphql examples must not declare variables (nothing supplies them)"
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
        let actor = match caller {
            Caller::Anonymous => self.app.anonymous(),
            Caller::User => self.app.bearer(&self.user_access().await),
            Caller::Admin => self.app.bearer(&self.admin_access().await),
        };
        let response = actor.query(&document, json!({})).await;
        assert_validated(&response, at, &document);
        match &marker.expect {
            Some(code) => {
                let codes = response.codes();
                assert!(
                    !codes.is_empty() && codes.iter().all(|c| c == code),
                    "{at}: expected {code}, got {response}\n{document}"
                );
            }
            None => {
                assert!(
                    response.is_ok(),
                    "{at}: the example fails: {response}\n{document}"
                );
            }
        }
        self.remember(&response.body, &root_fields, caller);
        self.last_response = Some((at.to_owned(), response.body));
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
        .filter(|b| b.lang == "sh" && b.at.starts_with("README.md:"))
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

/// Removes `locations` from every error, as the examples do.
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

/// Whether `actual` is the answer a `response` block shows: the answer itself, or, for a batch,
/// the answer of each of its operations.
fn answers_as_shown(actual: &Value, shown: &Value) -> bool {
    match actual {
        Value::Array(items) if !shown.is_array() => {
            !items.is_empty() && items.iter().all(|item| item == shown)
        }
        _ => actual == shown,
    }
}

#[tokio::test]
async fn readme_graphql_examples_run_and_answer_as_shown() {
    let blocks = all_blocks();
    let app = TestApp::spawn().await;
    let (admin_username, admin_password) = readme_admin(&blocks);
    app.create_admin(&admin_username, &admin_password)
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
        let at = &block.at;
        let marker = &block.marker;
        assert!(
            !marker.not_run || (marker.caller.is_none() && marker.expect.is_none()),
            "{at}: a block that is not run expects nothing"
        );
        match block.lang.as_str() {
            "graphql" if !marker.not_run => {
                assert!(
                    !marker.response && !marker.post && marker.output_of.is_none(),
                    "{at}: misplaced marker"
                );
                let operations = operations(&block.code);
                assert!(!operations.is_empty(), "{at}: empty graphql block");
                for operation in operations {
                    walk.run(&operation, marker, at).await;
                    ran += 1;
                }
            }
            "json" if marker.post => {
                let body: Value = serde_json::from_str(&block.code)
                    .unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                let admin = app.bearer(&walk.admin_access().await);
                let answer = admin.post(&body).await.body;
                walk.last_response = Some((at.clone(), answer));
            }
            "json" if marker.response => {
                let (sent_at, actual) = walk.last_response.take().unwrap_or_else(|| {
                    panic!("{at}: a response marker needs a graphql or posted json block before it")
                });
                let shown: Value = serde_json::from_str(&block.code)
                    .unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                let actual = match actual {
                    Value::Array(items) => {
                        Value::Array(items.into_iter().map(without_locations).collect())
                    }
                    other => without_locations(other),
                };
                assert!(
                    answers_as_shown(&actual, &shown),
                    "{at}: the answer to the block at {sent_at} differs from the one shown:\n\
                     answered: {actual}\n   shown: {shown}"
                );
                compared += 1;
            }
            _ => assert!(
                marker.caller.is_none() && marker.expect.is_none() && !marker.response,
                "{at}: graphql markers belong before graphql blocks"
            ),
        }
    }
    assert!(ran >= 10, "only {ran} GraphQL operations found");
    assert!(compared >= 4, "only {compared} responses compared");
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

/// The GraphQL documents in a `js` or `sh` block.
fn code_documents(block: &Block) -> Vec<String> {
    let candidates = match block.lang.as_str() {
        "js" | "javascript" => js_template_literals(&block.code),
        "sh" => sh_queries(&block.code),
        _ => Vec::new(),
    };
    candidates
        .into_iter()
        .filter(|d| looks_like_graphql(d))
        .collect()
}

#[tokio::test]
async fn readme_graphql_in_code_examples_validates() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for block in all_blocks().iter().filter(|b| !b.marker.not_run) {
        let at = &block.at;
        for document in code_documents(block) {
            assert!(
                !document.contains("${"),
                "{at}: GraphQL with interpolation cannot be checked"
            );
            shape(&document, at);
            checked += 1;
            if is_subscription(&document) {
                // Over the socket, as clients send it: a document refused by the limits gets
                // an `error` message, one that does not validate a `next` with errors on no
                // path; a valid one runs (an anonymous caller is refused by the guard).
                let mut client = WsClient::anonymous(&app).await;
                client.subscribe("doc", &document, json!({})).await;
                let message = client.message().await;
                let request_errors = message["payload"]["errors"].as_array().map_or(0, |errors| {
                    errors.iter().filter(|e| e.get("path").is_none()).count()
                });
                assert!(
                    message["type"] == "next" && request_errors == 0,
                    "{at}: the subscription does not parse or validate: {message}\n{document}"
                );
                continue;
            }
            // Anonymous and without variables: the document is validated, but nothing that
            // needs a token or a variable runs.
            let response = app.anonymous().query(&document, json!({})).await;
            assert_validated(&response, at, &document);
        }
    }
    assert!(
        checked >= 8,
        "only {checked} GraphQL documents found in code examples"
    );
}

// ---------------------------------------------------------------------------------------------
// CLI

/// `storefront ARGS` in the repository, with the policy folder its docs assume.
fn run_storefront(args: &[&str]) -> std::process::Output {
    storefront(args)
        .in_dir(root())
        .env_remove("POLICY_DIR")
        .run()
}

fn assert_command_exists(words: &[String], options: &[String], at: &str) {
    let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
    args.push("--help");
    let out = run_storefront(&args);
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
    let operations = doc("docs/operations.md");
    let rows = table_rows(&operations.text, "CLI");
    assert!(
        rows.len() >= 8,
        "the CLI table of docs/operations.md has only {} rows",
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
    let docs = markdown_files();
    let blocks: Vec<Block> = docs.iter().flat_map(fenced_blocks).collect();
    let mut mentioned = BTreeSet::new();
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        for line in block.code.lines() {
            mentioned.extend(commands_in(line));
        }
    }
    for doc in &docs {
        let mut in_fence = false;
        for line in doc.text.lines() {
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
    }
    assert!(mentioned.len() >= 5, "only {mentioned:?} found");
    for words in &mentioned {
        assert_command_exists(words, &[], &format!("`storefront {}`", words.join(" ")));
    }

    // Output shown in the docs.
    for block in blocks.iter().filter(|b| b.marker.output_of.is_some()) {
        let args = block.marker.output_of.as_deref().unwrap();
        let out = run_storefront(&args.split_whitespace().collect::<Vec<_>>());
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
            "{}: `storefront {args}` prints something else",
            block.at
        );
    }

    // Policy lines: added to the shipped policy, `policy check` accepts them.
    let mut policies = 0;
    for block in blocks
        .iter()
        .filter(|b| b.lang == "csv" && !b.marker.not_run)
    {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("model.conf"), source("policies/model.conf")).unwrap();
        let policy = format!("{}\n{}", source("policies/policy.csv"), block.code);
        std::fs::write(dir.path().join("policy.csv"), policy).unwrap();
        let folder = dir.path().to_str().expect("a UTF-8 temp path");
        let out = run_storefront(&["policy", "check", "--dir", folder]);
        assert!(
            out.status.success(),
            "{}: `storefront policy check` refuses these lines: {}{}",
            block.at,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        policies += 1;
    }
    assert!(policies >= 2, "only {policies} policy examples checked");
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The file that holds the configuration tables, relative to the crate.
const CONFIGURATION_DOC: &str = "docs/configuration.md";

#[test]
fn configuration_tables_are_what_storefront_config_markdown_prints() {
    let doc = source(CONFIGURATION_DOC);
    let (begin, end) = ("<!-- config:begin -->\n", "<!-- config:end -->");
    let region = doc
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(region, _)| region)
        .unwrap_or_else(|| panic!("{CONFIGURATION_DOC} has no {begin:?} … {end:?} region"));
    let out = run_storefront(&["config", "--markdown"]);
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

// ---------------------------------------------------------------------------------------------
// Every block is checked

/// What checks a block, as words for the summary; an error when nothing would.
fn checks(block: &Block) -> Result<Vec<&'static str>, String> {
    let marker = &block.marker;
    if marker.copy_of.is_none() {
        return language_checks(block);
    }
    let mut checks = vec!["same as the file it copies"];
    if !marker.not_run {
        // A copied module may hold no GraphQL of its own: the test that runs it checks it.
        checks.extend(language_checks(block).unwrap_or_default());
    }
    Ok(checks)
}

/// What checks a block by its language and markers, other than `copy of`.
fn language_checks(block: &Block) -> Result<Vec<&'static str>, String> {
    let marker = &block.marker;
    if marker.not_run {
        return Ok(vec!["not run"]);
    }
    match block.lang.as_str() {
        "graphql" => Ok(vec!["run"]),
        "json" if marker.response => Ok(vec!["compared with the answer"]),
        "json" if marker.post => Ok(vec!["sent"]),
        "json" => Ok(vec!["parsed"]),
        "js" | "javascript" if !code_documents(block).is_empty() => Ok(vec!["GraphQL validated"]),
        "js" | "javascript" => Err("a js block with no GraphQL in it".to_owned()),
        "sh" => {
            let mut checks = vec!["bash -n"];
            if !code_documents(block).is_empty() {
                checks.push("GraphQL validated");
            }
            if block.code.lines().any(|l| !commands_in(l).is_empty()) {
                checks.push("commands exist");
            }
            Ok(checks)
        }
        "csv" => Ok(vec!["policy check"]),
        "nginx" => Ok(vec!["nginx -t", "run by tests/api/nginx.rs"]),
        "text" if marker.output_of.is_some() => Ok(vec!["output compared"]),
        lang => Err(format!("no test checks a ```{lang} block")),
    }
}

/// Runs `bash -n` on a shell block.
fn bash_syntax(code: &str, at: &str) {
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    bash.stdin
        .take()
        .unwrap()
        .write_all(code.as_bytes())
        .unwrap();
    let out = bash.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{at}: `bash -n` refuses the block: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `nginx -t` on an nginx block (what goes in `conf.d/`, so inside `http { }`), with
/// every file nginx writes in a temp dir; says so and returns when nginx is not installed
/// (`.ci/run` installs it).
fn nginx_syntax(code: &str, at: &str) {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| Path::new(path).exists())
    else {
        println!("{at}: not checked, nginx is not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path().display();
    let config = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         {code}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config).expect("write the nginx config");
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&path)
        .output()
        .expect("nginx runs");
    assert!(
        out.status.success(),
        "{at}: `nginx -t` refuses the block: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_every_markdown_example_is_checked() {
    let docs = markdown_files();
    let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
    for expected in ["README.md", "docs/api.md", "docs/configuration.md"] {
        assert!(
            paths.contains(&expected),
            "{expected} is not among {paths:?}"
        );
    }
    let mut unchecked = Vec::new();
    let mut summary = String::new();
    for doc in &docs {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for block in fenced_blocks(doc) {
            match checks(&block) {
                Ok(checks) => {
                    for check in checks {
                        *counts.entry(check).or_default() += 1;
                    }
                }
                Err(why) => unchecked.push(format!("{}: {why}", block.at)),
            }
            if block.marker.not_run {
                continue;
            }
            match block.lang.as_str() {
                "sh" => bash_syntax(&block.code, &block.at),
                "json" => {
                    serde_json::from_str::<Value>(&block.code)
                        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", block.at));
                }
                "nginx" => nginx_syntax(&block.code, &block.at),
                _ => {}
            }
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        summary.push_str(&format!("{}: {}\n", doc.path, counts.join(", ")));
    }
    println!("{summary}");
    assert!(
        unchecked.is_empty(),
        "blocks no test checks (teach tests/api/readme.rs, or mark them \
         `<!-- readme-test: not run -->`):\n{}",
        unchecked.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Copies of files

#[test]
fn readme_copies_are_the_files_they_show() {
    let mut compared = 0;
    for block in all_blocks() {
        let Some(path) = &block.marker.copy_of else {
            continue;
        };
        let at = &block.at;
        let file = root().join(path);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{at}: the block copies {path}, which cannot be read: {e}"));
        if block.code != text {
            let (shown, actual): (Vec<_>, Vec<_>) =
                (block.code.lines().collect(), text.lines().collect());
            let line = (0..shown.len().max(actual.len()))
                .find(|&i| shown.get(i) != actual.get(i))
                .unwrap_or(shown.len());
            panic!(
                "{at}: the block differs from {path} (paste the file in) at its line {}:\n  \
                 shown: {:?}\n   file: {:?}",
                line + 1,
                shown.get(line),
                actual.get(line)
            );
        }
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} copies of files found");
}

// ---------------------------------------------------------------------------------------------
// Links

/// GitHub's anchor for a heading: lower case, without punctuation, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown file outside fenced blocks, numbered from 1.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// The anchors of a file's headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = slug(&line[hashes..]);
        let n = seen.entry(slug.clone()).or_default();
        anchors.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// The targets of the inline links of a line, outside code spans.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    for prose in line.split('`').step_by(2) {
        for (i, _) in prose.match_indices("](") {
            let rest = &prose[i + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].trim());
            }
        }
    }
    targets
}

#[test]
fn readme_markdown_links_resolve() {
    let docs = markdown_files();
    let anchors_of: BTreeMap<&str, BTreeSet<String>> = docs
        .iter()
        .map(|d| (d.path.as_str(), anchors(&d.text)))
        .collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let dir = Path::new(&doc.path).parent().unwrap_or(Path::new(""));
        for (line, text) in prose_lines(&doc.text) {
            for target in link_targets(text) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let at = format!("{}:{line}", doc.path);
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                // The target, relative to the repository, with `..` resolved.
                let mut parts: Vec<&str> = Vec::new();
                let joined = if file.is_empty() {
                    doc.path.clone()
                } else {
                    dir.join(file).to_string_lossy().replace('\\', "/")
                };
                for part in joined.split('/') {
                    match part {
                        "" | "." => {}
                        ".." => {
                            if parts.pop().is_none() {
                                broken.push(format!("{at}: {target} leaves the repository"));
                            }
                        }
                        part => parts.push(part),
                    }
                }
                let resolved = parts.join("/");
                checked += 1;
                if !root().join(&resolved).exists() {
                    broken.push(format!("{at}: {target}: no file {resolved}"));
                } else if !anchor.is_empty() {
                    match anchors_of.get(resolved.as_str()) {
                        Some(anchors) if anchors.contains(anchor) => {}
                        Some(_) => broken.push(format!("{at}: {target}: no heading #{anchor}")),
                        None => broken.push(format!(
                            "{at}: {target}: an anchor into a file that is not Markdown"
                        )),
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 50, "only {checked} relative links found");
}

/// Where the code names a Markdown file in `docs/`, with the anchor after `#` if any.
fn doc_references(code: &str) -> Vec<(String, String)> {
    let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut references = Vec::new();
    for (i, _) in code.match_indices("docs/") {
        let rest = &code[i..];
        let stem = rest["docs/".len()..]
            .find(|c| !name(c))
            .map_or(rest.len(), |end| "docs/".len() + end);
        let Some(after) = rest[stem..].strip_prefix(".md") else {
            continue;
        };
        let anchor = after
            .strip_prefix('#')
            .map(|a| &a[..a.find(|c| !name(c)).unwrap_or(a.len())])
            .unwrap_or("");
        references.push((format!("{}.md", &rest[..stem]), anchor.to_owned()));
    }
    references
}

/// The code files that may point into the docs: Rust sources and a few configuration files.
fn code_files() -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root()).expect("inside the repository");
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["src", "migration/src", "benches", "bench/src", "tests"] {
        if root().join(dir).is_dir() {
            walk(&root().join(dir), &mut files);
        }
    }
    files.extend(
        [
            ".cargo/config.toml",
            ".env.example",
            "Cargo.toml",
            "bench/run.sh",
        ]
        .into_iter()
        .filter(|f| root().join(f).is_file())
        .map(str::to_owned),
    );
    files
}

#[test]
fn readme_docs_named_in_code_exist() {
    let mut broken = Vec::new();
    for file in code_files() {
        for (doc, anchor) in doc_references(&source(&file)) {
            if !root().join(&doc).is_file() {
                broken.push(format!("{file}: {doc} does not exist"));
            } else if !anchor.is_empty() && !anchors(&source(&doc)).contains(&anchor) {
                broken.push(format!("{file}: {doc} has no heading #{anchor}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the code points at docs that are not there:\n{}",
        broken.join("\n")
    );
}
