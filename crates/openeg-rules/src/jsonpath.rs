//! The JSONPath subset of transforms: `$`, `.name`, `['name']`/`["name"]`, `[n]`
//! (negative from the end), `[*]` and `.*`. No filters, no recursive descent.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(i64),
    Wildcard,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    pub steps: Vec<Step>,
}

/// The result of a path: a wildcard path always yields an array of its matches.
#[derive(Debug, Clone, PartialEq)]
pub enum PathValue<'a> {
    Missing,
    One(&'a Value),
    Many(Vec<&'a Value>),
}

impl JsonPath {
    /// Parses a path; the error says what is wrong and where.
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let b: Vec<char> = s.chars().collect();
        if b.first() != Some(&'$') {
            return Err("a JSONPath starts with $".into());
        }
        let mut i = 1;
        let mut steps = Vec::new();
        while i < b.len() {
            match b[i] {
                '.' => {
                    i += 1;
                    if b.get(i) == Some(&'*') {
                        steps.push(Step::Wildcard);
                        i += 1;
                        continue;
                    }
                    let start = i;
                    while i < b.len() && b[i] != '.' && b[i] != '[' {
                        i += 1;
                    }
                    if i == start {
                        return Err(format!("empty name after '.' at {start}"));
                    }
                    steps.push(Step::Key(b[start..i].iter().collect()));
                }
                '[' => {
                    i += 1;
                    match b.get(i) {
                        Some('*') => {
                            if b.get(i + 1) != Some(&']') {
                                return Err(format!("expected ']' at {}", i + 1));
                            }
                            steps.push(Step::Wildcard);
                            i += 2;
                        }
                        Some(&q @ ('\'' | '"')) => {
                            i += 1;
                            let mut name = String::new();
                            loop {
                                match b.get(i) {
                                    None => return Err("unterminated quoted name".into()),
                                    Some('\\') => {
                                        let c = *b.get(i + 1).ok_or("unterminated quoted name")?;
                                        name.push(c);
                                        i += 2;
                                    }
                                    Some(&c) if c == q => {
                                        i += 1;
                                        break;
                                    }
                                    Some(&c) => {
                                        name.push(c);
                                        i += 1;
                                    }
                                }
                            }
                            if b.get(i) != Some(&']') {
                                return Err(format!("expected ']' at {i}"));
                            }
                            i += 1;
                            steps.push(Step::Key(name));
                        }
                        _ => {
                            let start = i;
                            if b.get(i) == Some(&'-') {
                                i += 1;
                            }
                            while i < b.len() && b[i].is_ascii_digit() {
                                i += 1;
                            }
                            let text: String = b[start..i].iter().collect();
                            let n: i64 = text.parse().map_err(|_| {
                                format!("expected an index, '*' or a quoted name at {start}")
                            })?;
                            if b.get(i) != Some(&']') {
                                return Err(format!("expected ']' at {i}"));
                            }
                            i += 1;
                            steps.push(Step::Index(n));
                        }
                    }
                }
                c => return Err(format!("unexpected {c:?} at {i}")),
            }
        }
        Ok(JsonPath { steps })
    }

    pub fn has_wildcard(&self) -> bool {
        self.steps.contains(&Step::Wildcard)
    }

    pub fn eval<'a>(&self, root: &'a Value) -> PathValue<'a> {
        let mut cur: Vec<&'a Value> = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match (step, v) {
                    (Step::Key(k), Value::Object(o)) => next.extend(o.get(k.as_str())),
                    (Step::Index(n), Value::Array(a)) => {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if idx >= 0 {
                            next.extend(a.get(idx as usize));
                        }
                    }
                    (Step::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                    (Step::Wildcard, Value::Object(o)) => next.extend(o.values()),
                    _ => {}
                }
            }
            cur = next;
        }
        if self.has_wildcard() {
            PathValue::Many(cur)
        } else {
            cur.first()
                .map_or(PathValue::Missing, |v| PathValue::One(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"data": {"items": [{"sku": "a"}, {"sku": "b"}], "o": {"k": 1}}});
        let p = JsonPath::parse("$.data.items[*].sku").unwrap();
        assert_eq!(p.eval(&v), PathValue::Many(vec![&json!("a"), &json!("b")]));
        let p = JsonPath::parse("$['data'][\"items\"][-1].sku").unwrap();
        assert_eq!(p.eval(&v), PathValue::One(&json!("b")));
        assert_eq!(
            JsonPath::parse("$.data.nope").unwrap().eval(&v),
            PathValue::Missing
        );
        assert_eq!(
            JsonPath::parse("$.data.o.*").unwrap().eval(&v),
            PathValue::Many(vec![&json!(1)])
        );
        assert_eq!(JsonPath::parse("$").unwrap().eval(&v), PathValue::One(&v));
        for bad in ["data", "$.", "$[", "$[x]", "$['a'", "$..a", "$[1"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
