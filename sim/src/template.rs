//! Just enough of CloudFormation's template language to resolve the templates a deploy tool
//! meets: `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
//! `Fn::ImportValue`, `Fn::If` with `Conditions`, `Fn::GetAZs`, `Fn::Base64` and the pseudo
//! parameters; resources ordered by their references.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// What `AWS::NoValue` resolves to before its key or item is dropped.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// The names a template's expressions can see.
pub struct Scope<'a> {
    /// Parameter values (after defaults).
    pub params: &'a BTreeMap<String, String>,
    /// Parameter types, to turn list parameters into arrays.
    pub param_types: &'a BTreeMap<String, String>,
    /// Logical id → physical id of the resources known so far.
    pub physical: &'a BTreeMap<String, String>,
    /// Logical id → attribute → value, for `Fn::GetAtt`.
    pub attrs: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Exports of every stack, for `Fn::ImportValue`.
    pub exports: &'a BTreeMap<String, String>,
    /// Condition name → value.
    pub conditions: &'a BTreeMap<String, bool>,
    /// `AWS::StackName`.
    pub stack_name: &'a str,
    /// `AWS::StackId`.
    pub stack_id: &'a str,
    /// `AWS::Region`.
    pub region: &'a str,
    /// `AWS::AccountId`.
    pub account: &'a str,
}

impl Scope<'_> {
    fn reference(&self, name: &str) -> Result<Value, String> {
        Ok(Value::String(match name {
            "AWS::Region" => self.region.to_owned(),
            "AWS::AccountId" => self.account.to_owned(),
            "AWS::StackName" => self.stack_name.to_owned(),
            "AWS::StackId" => self.stack_id.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::NoValue" => NO_VALUE.to_owned(),
            _ => {
                if let Some(v) = self.params.get(name) {
                    let ty = self.param_types.get(name).map_or("String", String::as_str);
                    if ty.starts_with("List<") || ty == "CommaDelimitedList" {
                        return Ok(Value::Array(
                            v.split(',')
                                .map(|s| Value::String(s.trim().to_owned()))
                                .collect(),
                        ));
                    }
                    v.clone()
                } else if let Some(p) = self.physical.get(name) {
                    p.clone()
                } else {
                    return Err(format!("Template format error: Unresolved resource dependencies [{name}] in the Resources block of the template"));
                }
            }
        }))
    }

    fn get_att(&self, logical: &str, attr: &str) -> Result<String, String> {
        if let Some(v) = self.attrs.get(logical).and_then(|a| a.get(attr)) {
            return Ok(v.clone());
        }
        match self.physical.get(logical) {
            Some(p) if attr.ends_with("Arn") && p.starts_with("arn:") => Ok(p.clone()),
            Some(p) => Ok(format!("{p}.{attr}")),
            None => Err(format!(
                "Template error: instance of Fn::GetAtt references undefined resource {logical}"
            )),
        }
    }
}

/// Resolves every intrinsic function in `value`.
pub fn resolve(value: &Value, scope: &Scope) -> Result<Value, String> {
    let out = resolve_inner(value, scope)?;
    Ok(out)
}

fn is_no_value(v: &Value) -> bool {
    v.as_str() == Some(NO_VALUE)
}

fn resolve_inner(value: &Value, scope: &Scope) -> Result<Value, String> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .unwrap_or(("", &Value::Null));
            match key {
                "Ref" => {
                    let name = arg
                        .as_str()
                        .ok_or("Template error: Ref must name a string")?;
                    scope.reference(name)
                }
                "Fn::GetAtt" => {
                    let (logical, attr) = match arg {
                        Value::String(s) => s
                            .split_once('.')
                            .ok_or("Template error: Fn::GetAtt needs Resource.Attribute")?,
                        Value::Array(a) if a.len() == 2 => (
                            a[0].as_str()
                                .ok_or("Template error: Fn::GetAtt resource must be a string")?,
                            a[1].as_str()
                                .ok_or("Template error: Fn::GetAtt attribute must be a string")?,
                        ),
                        _ => {
                            return Err(
                                "Template error: Fn::GetAtt takes [resource, attribute]".into()
                            )
                        }
                    };
                    scope.get_att(logical, attr).map(Value::String)
                }
                "Fn::Sub" => sub(arg, scope).map(Value::String),
                "Fn::Join" => {
                    let a = arg
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Template error: Fn::Join takes [delimiter, [values]]")?;
                    let sep = a[0]
                        .as_str()
                        .ok_or("Template error: Fn::Join delimiter must be a string")?;
                    let items = resolve_inner(&a[1], scope)?;
                    let items = items
                        .as_array()
                        .ok_or("Template error: Fn::Join values must be a list")?;
                    let parts: Vec<String> = items.iter().map(scalar).collect::<Result<_, _>>()?;
                    Ok(Value::String(parts.join(sep)))
                }
                "Fn::Select" => {
                    let a = arg
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Template error: Fn::Select takes [index, list]")?;
                    let index = scalar(&resolve_inner(&a[0], scope)?)?
                        .parse::<usize>()
                        .map_err(|_| "Template error: Fn::Select index must be a number")?;
                    let list = resolve_inner(&a[1], scope)?;
                    list.as_array()
                        .and_then(|l| l.get(index).cloned())
                        .ok_or_else(|| "Template error: Fn::Select index out of range".to_owned())
                }
                "Fn::Split" => {
                    let a = arg
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("Template error: Fn::Split takes [delimiter, string]")?;
                    let sep = a[0]
                        .as_str()
                        .ok_or("Template error: Fn::Split delimiter must be a string")?;
                    let s = scalar(&resolve_inner(&a[1], scope)?)?;
                    Ok(Value::Array(
                        s.split(sep).map(|p| Value::String(p.to_owned())).collect(),
                    ))
                }
                "Fn::ImportValue" => {
                    let name = scalar(&resolve_inner(arg, scope)?)?;
                    scope
                        .exports
                        .get(&name)
                        .map(|v| Value::String(v.clone()))
                        .ok_or_else(|| {
                            format!("No export named {name} found. Rollback requested by user.")
                        })
                }
                "Fn::If" => {
                    let a = arg
                        .as_array()
                        .filter(|a| a.len() == 3)
                        .ok_or("Template error: Fn::If takes [condition, then, else]")?;
                    let name = a[0]
                        .as_str()
                        .ok_or("Template error: Fn::If condition must be a name")?;
                    let cond = *scope.conditions.get(name).ok_or_else(|| {
                        format!("Template error: unresolved condition dependency {name} in Fn::If")
                    })?;
                    resolve_inner(if cond { &a[1] } else { &a[2] }, scope)
                }
                "Fn::GetAZs" => Ok(Value::Array(
                    ["a", "b", "c"]
                        .iter()
                        .map(|z| Value::String(format!("{}{z}", scope.region)))
                        .collect(),
                )),
                "Fn::Base64" => resolve_inner(arg, scope),
                k if k.starts_with("Fn::") => {
                    Err(format!("Template error: slipway-sim does not support {k}"))
                }
                _ => resolve_object(map, scope),
            }
        }
        Value::Object(map) => resolve_object(map, scope),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let v = resolve_inner(item, scope)?;
                if !is_no_value(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        other => Ok(other.clone()),
    }
}

fn resolve_object(map: &Map<String, Value>, scope: &Scope) -> Result<Value, String> {
    let mut out = Map::new();
    for (k, v) in map {
        let v = resolve_inner(v, scope)?;
        if !is_no_value(&v) {
            out.insert(k.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("Template error: expected a string, found {other}")),
    }
}

fn sub(arg: &Value, scope: &Scope) -> Result<String, String> {
    let (text, vars) = match arg {
        Value::String(s) => (s.as_str(), Map::new()),
        Value::Array(a) if a.len() == 2 => (
            a[0].as_str()
                .ok_or("Template error: Fn::Sub string must be a string")?,
            a[1].as_object()
                .cloned()
                .ok_or("Template error: Fn::Sub variables must be a map")?,
        ),
        _ => return Err("Template error: Fn::Sub takes a string or [string, {variables}]".into()),
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or("Template error: unterminated ${ in Fn::Sub")?;
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else if let Some(v) = vars.get(name) {
            out.push_str(&scalar(&resolve_inner(v, scope)?)?);
        } else if let Some((logical, attr)) =
            name.split_once('.').filter(|_| !name.starts_with("AWS::"))
        {
            out.push_str(&scope.get_att(logical, attr)?);
        } else {
            out.push_str(&scalar(&scope.reference(name)?)?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The logical ids a value refers to (through Ref, GetAtt and Sub).
pub fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(n) = a.first().and_then(Value::as_str) {
                            out.insert(n.to_owned());
                        }
                    }
                    ("Fn::GetAtt", Value::String(s)) => {
                        out.insert(s.split('.').next().unwrap_or(s).to_owned());
                    }
                    ("Fn::Sub", arg) => {
                        let text = match arg {
                            Value::String(s) => Some(s.as_str()),
                            Value::Array(a) => {
                                if let Some(vars) = a.get(1) {
                                    references(vars, out);
                                }
                                a.first().and_then(Value::as_str)
                            }
                            _ => None,
                        };
                        let mut rest = text.unwrap_or("");
                        while let Some(start) = rest.find("${") {
                            let after = &rest[start + 2..];
                            let Some(end) = after.find('}') else { break };
                            let name = &after[..end];
                            out.insert(name.split('.').next().unwrap_or(name).to_owned());
                            rest = &after[end + 1..];
                        }
                    }
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// The resources of a template in an order where each comes after those it refers to.
pub fn creation_order(resources: &Map<String, Value>) -> Result<Vec<String>, String> {
    let mut deps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, r) in resources {
        let mut refs = BTreeSet::new();
        references(r, &mut refs);
        match r.get("DependsOn") {
            Some(Value::String(d)) => {
                refs.insert(d.clone());
            }
            Some(Value::Array(ds)) => {
                refs.extend(ds.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
        refs.retain(|d| resources.contains_key(d) && d != name);
        deps.insert(name, refs);
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < resources.len() {
        let ready: Vec<&str> = deps
            .iter()
            .filter(|(n, ds)| {
                !order.iter().any(|o| o == *n) && ds.iter().all(|d| order.contains(d))
            })
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = deps
                .keys()
                .filter(|n| !order.iter().any(|o| o == *n))
                .copied()
                .collect();
            return Err(format!(
                "Circular dependency between resources: [{}]",
                stuck.join(", ")
            ));
        }
        order.extend(ready.into_iter().map(str::to_owned));
    }
    Ok(order)
}

/// Evaluates a template's `Conditions` section.
pub fn conditions(
    template: &Value,
    scope_params: &Scope,
) -> Result<BTreeMap<String, bool>, String> {
    let mut out = BTreeMap::new();
    let Some(defs) = template.get("Conditions").and_then(Value::as_object) else {
        return Ok(out);
    };
    fn eval(
        v: &Value,
        defs: &Map<String, Value>,
        scope: &Scope,
        depth: usize,
    ) -> Result<bool, String> {
        if depth > 32 {
            return Err("Template error: conditions nest too deep".into());
        }
        let (k, arg) = v
            .as_object()
            .and_then(|m| m.iter().next())
            .ok_or("Template error: a condition must be a condition function")?;
        let list = || {
            arg.as_array()
                .ok_or_else(|| format!("Template error: {k} takes a list"))
        };
        match k.as_str() {
            "Fn::Equals" => {
                let l = list()?;
                if l.len() != 2 {
                    return Err("Template error: Fn::Equals takes two values".into());
                }
                Ok(resolve(&l[0], scope)? == resolve(&l[1], scope)?)
            }
            "Fn::Not" => Ok(!eval(
                list()?
                    .first()
                    .ok_or("Template error: Fn::Not takes one condition")?,
                defs,
                scope,
                depth + 1,
            )?),
            "Fn::And" => list()?
                .iter()
                .try_fold(true, |acc, c| Ok(acc && eval(c, defs, scope, depth + 1)?)),
            "Fn::Or" => list()?
                .iter()
                .try_fold(false, |acc, c| Ok(acc || eval(c, defs, scope, depth + 1)?)),
            "Condition" => {
                let name = arg
                    .as_str()
                    .ok_or("Template error: Condition takes a name")?;
                eval(
                    defs.get(name)
                        .ok_or_else(|| format!("Template error: unknown condition {name}"))?,
                    defs,
                    scope,
                    depth + 1,
                )
            }
            other => Err(format!(
                "Template error: {other} is not a condition function"
            )),
        }
    }
    for (name, def) in defs {
        out.insert(name.clone(), eval(def, defs, scope_params, 0)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope_with<'a>(
        params: &'a BTreeMap<String, String>,
        physical: &'a BTreeMap<String, String>,
        empty: &'a BTreeMap<String, String>,
        attrs: &'a BTreeMap<String, BTreeMap<String, String>>,
        conditions: &'a BTreeMap<String, bool>,
    ) -> Scope<'a> {
        Scope {
            params,
            param_types: empty,
            physical,
            attrs,
            exports: empty,
            conditions,
            stack_name: "ecs",
            stack_id: "arn:stack",
            region: "us-east-1",
            account: "123456789012",
        }
    }

    #[test]
    fn resolves_ref_sub_join_and_novalue() {
        let params = BTreeMap::from([("Image".to_owned(), "repo@sha256:ab".to_owned())]);
        let physical = BTreeMap::from([("Td".to_owned(), "arn:aws:ecs:td/x:1".to_owned())]);
        let (empty, attrs, conds) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let scope = scope_with(&params, &physical, &empty, &attrs, &conds);
        let v = json!({
            "Image": {"Ref": "Image"},
            "Td": {"Ref": "Td"},
            "Name": {"Fn::Sub": "${AWS::StackName}-api-${Image}"},
            "Joined": {"Fn::Join": ["/", ["a", {"Ref": "AWS::Region"}]]},
            "Gone": {"Ref": "AWS::NoValue"},
            "List": [1, {"Ref": "AWS::NoValue"}, 2],
        });
        let r = resolve(&v, &scope).expect("resolves");
        assert_eq!(r["Image"], "repo@sha256:ab");
        assert_eq!(r["Td"], "arn:aws:ecs:td/x:1");
        assert_eq!(r["Name"], "ecs-api-repo@sha256:ab");
        assert_eq!(r["Joined"], "a/us-east-1");
        assert!(r.get("Gone").is_none());
        assert_eq!(r["List"], json!([1, 2]));
        assert!(resolve(&json!({"Ref": "Nope"}), &scope).is_err());
    }

    #[test]
    fn orders_resources_by_reference_and_finds_cycles() {
        let resources = json!({
            "Service": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": {"Ref": "Td"}}},
            "Td": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Family": {"Fn::Sub": "${Cluster}-x"}}},
            "Cluster": {"Type": "AWS::ECS::Cluster"},
        });
        let order = creation_order(resources.as_object().expect("object")).expect("orders");
        assert_eq!(order, vec!["Cluster", "Td", "Service"]);
        let cyclic = json!({"A": {"DependsOn": "B"}, "B": {"DependsOn": "A"}});
        assert!(creation_order(cyclic.as_object().expect("object"))
            .unwrap_err()
            .contains("Circular"));
    }
}
