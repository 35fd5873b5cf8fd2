//! FHIRPath expressions: lexer and precedence-climbing parser into [`Expr`].
//!
//! The grammar is FHIRPath's (normative release 2.0): invocations and indexers, the
//! unary and binary operators in their precedence order, literals (string, number,
//! boolean, date/time, `{}`), external constants (`%name`) and `$this`/`$index`.

use super::FhirPathError;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `{}` — the empty collection.
    Empty,
    Bool(bool),
    Str(String),
    Int(i64),
    Dec(f64),
    /// `@2020-01-01` (date), `@2020-01-01T10:00` (dateTime), `@T10:00` (time); the text
    /// without the `@`.
    Date(String),
    DateTime(String),
    Time(String),
    /// `%name`.
    Constant(String),
    This,
    Index,
    /// A member name at the start of a path (applied to `$this`).
    Member(String),
    /// A function at the start of a path (applied to `$this`).
    Call(String, Vec<Expr>),
    /// `base.member`
    Child(Box<Expr>, String),
    /// `base.function(args)`
    Method(Box<Expr>, String, Vec<Expr>),
    /// `base[index]`
    Indexer(Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is Type` / `expr as Type`
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
}

impl Expr {
    /// Calls `f` on this expression and every expression inside it.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Call(_, args) => args.iter().for_each(|a| a.visit(f)),
            Expr::Method(base, _, args) => {
                base.visit(f);
                args.iter().for_each(|a| a.visit(f));
            }
            Expr::Child(base, _) | Expr::Negate(base) | Expr::Is(base, _) | Expr::As(base, _) => base.visit(f),
            Expr::Indexer(a, b) | Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    DateTime(String),
    Constant(String),
    Special(String),
    Punct(&'static str),
}

fn lex(text: &str) -> Result<Vec<Token>, FhirPathError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |at: usize, what: &str| FhirPathError::Parse(format!("{what} at character {at}"));
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '`' {
            let (value, next) = quoted(&chars, i, '`').ok_or_else(|| err(i, "unterminated delimited identifier"))?;
            tokens.push(Token::Ident(value));
            i = next;
            continue;
        }
        if c == '\'' {
            let (value, next) = quoted(&chars, i, '\'').ok_or_else(|| err(i, "unterminated string"))?;
            tokens.push(Token::Str(value));
            i = next;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            // A long suffix `L` (integer64) is accepted and ignored.
            if chars.get(i) == Some(&'L') {
                i += 1;
                tokens.push(Token::Number(chars[start..i - 1].iter().collect()));
            } else {
                tokens.push(Token::Number(chars[start..i].iter().collect()));
            }
            continue;
        }
        if c == '@' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | ':' | '.' | '+' | 'T' | 'Z')) {
                i += 1;
            }
            if i == start {
                return Err(err(start, "empty date/time literal"));
            }
            tokens.push(Token::DateTime(chars[start..i].iter().collect()));
            continue;
        }
        if c == '%' {
            i += 1;
            if chars.get(i) == Some(&'`') {
                let (value, next) = quoted(&chars, i, '`').ok_or_else(|| err(i, "unterminated constant name"))?;
                tokens.push(Token::Constant(value));
                i = next;
            } else if chars.get(i) == Some(&'\'') {
                let (value, next) = quoted(&chars, i, '\'').ok_or_else(|| err(i, "unterminated constant name"))?;
                tokens.push(Token::Constant(value));
                i = next;
            } else {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if i == start {
                    return Err(err(start, "'%' without a constant name"));
                }
                tokens.push(Token::Constant(chars[start..i].iter().collect()));
            }
            continue;
        }
        if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            tokens.push(Token::Special(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let punct2 = ["<=", ">=", "!=", "!~"].into_iter().find(|p| *p == two);
        if let Some(p) = punct2 {
            tokens.push(Token::Punct(p));
            i += 2;
            continue;
        }
        let p = match c {
            '.' => ".",
            '[' => "[",
            ']' => "]",
            '(' => "(",
            ')' => ")",
            '{' => "{",
            '}' => "}",
            ',' => ",",
            '=' => "=",
            '~' => "~",
            '<' => "<",
            '>' => ">",
            '+' => "+",
            '-' => "-",
            '*' => "*",
            '/' => "/",
            '|' => "|",
            '&' => "&",
            _ => return Err(err(i, &format!("unexpected character {c:?}"))),
        };
        tokens.push(Token::Punct(p));
        i += 1;
    }
    Ok(tokens)
}

/// The text between `quote` at `start` and its closing quote, with escapes resolved.
fn quoted(chars: &[char], start: usize, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Some((out, i + 1)),
            '\\' => {
                let next = *chars.get(i + 1)?;
                i += 2;
                match next {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.get(i..i + 4)?.iter().collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        i += 4;
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// Parses a FHIRPath expression.
pub fn parse(text: &str) -> Result<Expr, FhirPathError> {
    let mut parser = Parser { tokens: lex(text)?, at: 0 };
    if parser.tokens.is_empty() {
        return Err(FhirPathError::Parse("empty expression".into()));
    }
    let expr = parser.expression(0)?;
    if parser.at < parser.tokens.len() {
        return Err(FhirPathError::Parse(format!("unexpected {:?} after the expression", parser.tokens[parser.at])));
    }
    Ok(expr)
}

/// Binary operators by precedence level (lowest first).
fn binary_op(token: &Token) -> Option<(BinOp, u8)> {
    Some(match token {
        Token::Ident(word) => match word.as_str() {
            "implies" => (BinOp::Implies, 1),
            "or" => (BinOp::Or, 2),
            "xor" => (BinOp::Xor, 2),
            "and" => (BinOp::And, 3),
            "in" => (BinOp::In, 4),
            "contains" => (BinOp::Contains, 4),
            "div" => (BinOp::IntDiv, 10),
            "mod" => (BinOp::Mod, 10),
            _ => return None,
        },
        Token::Punct(p) => match *p {
            "=" => (BinOp::Eq, 5),
            "!=" => (BinOp::Ne, 5),
            "~" => (BinOp::Equiv, 5),
            "!~" => (BinOp::NotEquiv, 5),
            "<" => (BinOp::Lt, 6),
            "<=" => (BinOp::Le, 6),
            ">" => (BinOp::Gt, 6),
            ">=" => (BinOp::Ge, 6),
            "|" => (BinOp::Union, 7),
            "+" => (BinOp::Add, 9),
            "-" => (BinOp::Sub, 9),
            "&" => (BinOp::Concat, 9),
            "*" => (BinOp::Mul, 10),
            "/" => (BinOp::Div, 10),
            _ => return None,
        },
        _ => return None,
    })
}

/// `is`/`as` bind at level 8 (between `|` and `+`).
const TYPE_LEVEL: u8 = 8;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, punct: &str) -> Result<(), FhirPathError> {
        match self.next() {
            Some(Token::Punct(p)) if p == punct => Ok(()),
            other => Err(FhirPathError::Parse(format!("expected {punct:?}, found {other:?}"))),
        }
    }

    fn expression(&mut self, min_level: u8) -> Result<Expr, FhirPathError> {
        let mut left = self.unary()?;
        while let Some(token) = self.peek() {
            if let Token::Ident(word) = token
                && (word == "is" || word == "as")
                && TYPE_LEVEL >= min_level
            {
                let is = word == "is";
                self.at += 1;
                let type_name = self.type_specifier()?;
                left = if is { Expr::Is(Box::new(left), type_name) } else { Expr::As(Box::new(left), type_name) };
                continue;
            }
            let Some((op, level)) = binary_op(token) else { break };
            if level < min_level {
                break;
            }
            self.at += 1;
            let right = self.expression(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn type_specifier(&mut self) -> Result<String, FhirPathError> {
        let mut name = match self.next() {
            Some(Token::Ident(name)) => name,
            other => return Err(FhirPathError::Parse(format!("expected a type name, found {other:?}"))),
        };
        // `FHIR.Patient`, `System.String`: the namespace is dropped.
        while matches!(self.peek(), Some(Token::Punct("."))) {
            self.at += 1;
            match self.next() {
                Some(Token::Ident(part)) => name = part,
                other => return Err(FhirPathError::Parse(format!("expected a type name, found {other:?}"))),
            }
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, FhirPathError> {
        match self.peek() {
            Some(Token::Punct("-")) => {
                self.at += 1;
                Ok(Expr::Negate(Box::new(self.unary()?)))
            }
            Some(Token::Punct("+")) => {
                self.at += 1;
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let mut expr = self.term()?;
        loop {
            match self.peek() {
                Some(Token::Punct(".")) => {
                    self.at += 1;
                    let name = match self.next() {
                        Some(Token::Ident(name)) => name,
                        other => return Err(FhirPathError::Parse(format!("expected a name after '.', found {other:?}"))),
                    };
                    if matches!(self.peek(), Some(Token::Punct("("))) {
                        let args = self.arguments()?;
                        expr = Expr::Method(Box::new(expr), name, args);
                    } else {
                        expr = Expr::Child(Box::new(expr), name);
                    }
                }
                Some(Token::Punct("[")) => {
                    self.at += 1;
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    expr = Expr::Indexer(Box::new(expr), Box::new(index));
                }
                _ => return Ok(expr),
            }
        }
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, FhirPathError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if matches!(self.peek(), Some(Token::Punct(")"))) {
            self.at += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expression(0)?);
            match self.next() {
                Some(Token::Punct(",")) => continue,
                Some(Token::Punct(")")) => return Ok(args),
                other => return Err(FhirPathError::Parse(format!("expected ',' or ')' in arguments, found {other:?}"))),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Number(n)) => {
                if n.contains('.') {
                    n.parse().map(Expr::Dec).map_err(|_| FhirPathError::Parse(format!("bad number {n}")))
                } else {
                    n.parse().map(Expr::Int).map_err(|_| FhirPathError::Parse(format!("integer {n} out of range")))
                }
            }
            Some(Token::DateTime(text)) => Ok(if let Some(time) = text.strip_prefix('T') {
                Expr::Time(time.to_owned())
            } else if text.contains('T') {
                Expr::DateTime(text)
            } else {
                Expr::Date(text)
            }),
            Some(Token::Constant(name)) => Ok(Expr::Constant(name)),
            Some(Token::Special(name)) => match name.as_str() {
                "this" => Ok(Expr::This),
                "index" => Ok(Expr::Index),
                "total" => Err(FhirPathError::Parse("$total is only defined in aggregate(), which is not supported".into())),
                other => Err(FhirPathError::Parse(format!("unknown ${other}"))),
            },
            Some(Token::Punct("(")) => {
                let expr = self.expression(0)?;
                self.expect(")")?;
                Ok(expr)
            }
            Some(Token::Punct("{")) => {
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Some(Token::Ident(name)) => {
                if matches!(self.peek(), Some(Token::Punct("("))) {
                    let args = self.arguments()?;
                    return Ok(Expr::Call(name, args));
                }
                Ok(match name.as_str() {
                    "true" => Expr::Bool(true),
                    "false" => Expr::Bool(false),
                    _ => Expr::Member(name),
                })
            }
            other => Err(FhirPathError::Parse(format!("unexpected {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_the_specification() {
        let e = parse("a = 'x' and b or c").unwrap();
        let Expr::Binary(BinOp::Or, left, _) = e else { panic!("{e:?}") };
        assert!(matches!(*left, Expr::Binary(BinOp::And, _, _)));
        let e = parse("1 + 2 * 3").unwrap();
        assert!(matches!(e, Expr::Binary(BinOp::Add, _, _)));
        let e = parse("name.where(use = 'official').family[0]").unwrap();
        assert!(matches!(e, Expr::Indexer(_, _)));
    }

    #[test]
    fn bad_expressions_are_reported() {
        for bad in ["@@", "", "name.", "where(", "'open", "a ==", "%"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals() {
        assert_eq!(parse("@2020-01-02").unwrap(), Expr::Date("2020-01-02".into()));
        assert_eq!(parse("@2020-01-02T10:00:00Z").unwrap(), Expr::DateTime("2020-01-02T10:00:00Z".into()));
        assert_eq!(parse("@T10:00").unwrap(), Expr::Time("10:00".into()));
        assert_eq!(parse("'it\\'s'").unwrap(), Expr::Str("it's".into()));
        assert_eq!(parse("%`a b`").unwrap(), Expr::Constant("a b".into()));
        assert_eq!(parse("2.50").unwrap(), Expr::Dec(2.5));
    }
}
