//! What a service trait says, read once and checked: its methods, their
//! arguments, what they return and how they travel. Everything that cannot
//! be a service method is refused here, with the error on the tokens at
//! fault.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem,
    Type, parse_quote,
};

/// Method names the generated client uses for itself (and `clone`, which
/// would hide `Clone::clone` on it).
const RESERVED: &[&str] = &[
    "new",
    "connect",
    "from_peer",
    "with_timeout",
    "peer",
    "clone",
];

/// A checked service trait.
pub struct Service {
    /// The trait as the user wrote it, minus our attributes.
    pub item: ItemTrait,
    pub methods: Vec<Method>,
}

/// How a method travels.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Stream,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Stream => "stream",
        }
    }
}

/// What a method's future gives.
pub enum Output {
    /// A value, `()` included.
    Value(Type),
    /// `Result<T, E>`: the caller gets `E` typed, apart from transport errors.
    Fallible { ok: Box<Type>, err: Box<Type> },
    /// `Stream<T>`: items of type `T`, then an end.
    Stream(Type),
}

pub struct Method {
    pub name: Ident,
    /// Doc comments and other attributes that are not ours.
    pub attrs: Vec<Attribute>,
    pub kind: Kind,
    /// Whether the first argument after `&self` is a `Context`.
    pub context: bool,
    pub args: Vec<Arg>,
    pub output: Output,
    /// What the description says it returns: the declared type (`()` when
    /// none), or a stream's item type.
    pub returns: Type,
}

pub struct Arg {
    pub name: Ident,
    pub ty: Type,
    /// `#[serde(...)]` attributes, moved onto the parameter struct's field.
    pub serde: Vec<Attribute>,
}

impl Method {
    /// The wire name of the method's route: `Trait.method`.
    pub fn route(&self, service: &Ident) -> String {
        format!("{}.{}", service.unraw(), self.name.unraw())
    }
}

/// Collects every error instead of stopping at the first.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }
}

/// The outcome of reading a trait: a service, or the errors together with
/// the trait stripped of our attributes (emitted anyway, so the errors are
/// not buried under "cannot find trait" ones).
pub type Read = Result<Service, Box<(syn::Error, ItemTrait)>>;

impl Service {
    pub fn read(mut item: ItemTrait) -> Read {
        let mut errors = Errors::default();
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.at(
                &item.generics,
                "a service trait cannot be generic: its routes and the client must know \
                 the concrete argument types",
            );
        }
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                TraitItem::Fn(function) => {
                    if let Some(method) = read_method(function, &mut errors) {
                        methods.push(method);
                    }
                }
                other => errors.at(
                    &*other,
                    "a service trait holds only `async fn` methods: other items cannot be \
                     called over a connection",
                ),
            }
        }
        match errors.0 {
            Some(error) => Err(Box::new((error, item))),
            None => Ok(Service { item, methods }),
        }
    }

    pub fn name(&self) -> &Ident {
        &self.item.ident
    }

    /// The trait rewritten for use: every method returns a `Send` future
    /// (a server runs it on any worker thread), and implementations are
    /// `Send + Sync + 'static` (they are shared between connections).
    /// Implementations still write `async fn`.
    pub fn trait_tokens(&self) -> TokenStream {
        let mut item = self.item.clone();
        item.supertraits.push(parse_quote!(::core::marker::Send));
        item.supertraits.push(parse_quote!(::core::marker::Sync));
        item.supertraits.push(parse_quote!('static));
        if item.colon_token.is_none() {
            item.colon_token = Some(Default::default());
        }
        for trait_item in &mut item.items {
            if let TraitItem::Fn(function) = trait_item {
                let output = match &function.sig.output {
                    ReturnType::Default => quote!(()),
                    ReturnType::Type(_, ty) => ty.to_token_stream(),
                };
                let span = function.sig.asyncness.span();
                function.sig.asyncness = None;
                function.sig.output = parse_quote_spanned_output(span, output);
            }
        }
        item.into_token_stream()
    }
}

fn parse_quote_spanned_output(span: Span, output: TokenStream) -> ReturnType {
    let tokens = quote_spanned! {span=>
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
    syn::parse2(tokens).expect("a return type")
}

/// Emits the errors, and the trait without our attributes.
pub fn failed(failure: Box<(syn::Error, ItemTrait)>) -> TokenStream {
    let (error, mut item) = *failure;
    for trait_item in &mut item.items {
        if let TraitItem::Fn(function) = trait_item {
            function
                .attrs
                .retain(|attr| !attr.path().is_ident("notification"));
            for input in &mut function.sig.inputs {
                if let FnArg::Typed(arg) = input {
                    arg.attrs.retain(|attr| !attr.path().is_ident("serde"));
                }
            }
        }
    }
    let mut out = error.to_compile_error();
    out.extend(item.into_token_stream());
    out
}

fn read_method(function: &mut syn::TraitItemFn, errors: &mut Errors) -> Option<Method> {
    let before = errors.0.is_some();
    let sig = &mut function.sig;
    let name = sig.ident.clone();

    let mut notification = false;
    function.attrs.retain(|attr| {
        let ours = attr.path().is_ident("notification");
        if ours {
            notification = true;
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                errors.at(attr, "#[notification] takes no arguments");
            }
        }
        !ours
    });

    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            format_args!(
                "service methods must be `async fn`: write `async fn {name}(&self, ...)` \
                 (the call crosses a connection, so its answer is awaited)"
            ),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.at(
            &sig.generics,
            format_args!(
                "service method `{name}` cannot be generic: the route decodes its arguments \
                 into concrete types, so name them"
            ),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness, "service methods cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "service methods cannot be `unsafe`");
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "service methods cannot be variadic");
    }
    if let Some(body) = &function.default {
        errors.at(
            body,
            format_args!(
                "service method `{name}` cannot have a default body: each implementation \
                 provides it"
            ),
        );
    }
    if RESERVED.iter().any(|reserved| name == reserved) {
        errors.at(
            &name,
            format_args!(
                "`{name}` is taken by the generated client's own methods \
                 ({}): choose another name",
                RESERVED.join(", ")
            ),
        );
    }

    let mut inputs = sig.inputs.iter_mut();
    match inputs.next() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() => {}
        Some(FnArg::Receiver(receiver)) if receiver.reference.is_some() => errors.at(
            &*receiver,
            "service methods take `&self`, not `&mut self`: one implementation serves \
             many calls at once, so keep mutable state behind a lock",
        ),
        Some(FnArg::Receiver(receiver)) => errors.at(
            &*receiver,
            "service methods take `&self`, not `self` by value: one implementation serves \
             every call, so no call can consume it",
        ),
        _ => errors.at(
            &sig.ident,
            format_args!(
                "service method `{name}` needs a `&self` receiver: write \
                 `async fn {name}(&self, ...)`"
            ),
        ),
    }

    let mut context = false;
    let mut args = Vec::new();
    for (index, input) in inputs.enumerate() {
        let FnArg::Typed(arg) = input else { continue };
        let serde = take_serde_attrs(&mut arg.attrs);
        for attr in &arg.attrs {
            errors.at(
                attr,
                "only #[serde(...)] attributes are allowed on service method arguments",
            );
        }
        if index == 0 && is_context(&arg.ty) {
            if !serde.is_empty() {
                errors.at(
                    &serde[0],
                    "the `Context` argument does not travel: no #[serde]",
                );
            }
            context = true;
            continue;
        }
        if is_context(&arg.ty) {
            errors.at(
                &arg.ty,
                "a `Context` argument must come first, right after `&self`",
            );
            continue;
        }
        let Pat::Ident(pat) = &*arg.pat else {
            errors.at(
                &arg.pat,
                "service method arguments must be plain names (`a: i64`): the names are \
                 the keys of the request's parameter object",
            );
            continue;
        };
        if pat.by_ref.is_some() || pat.subpat.is_some() {
            errors.at(
                &arg.pat,
                "service method arguments must be plain names (`a: i64`)",
            );
            continue;
        }
        if let Type::Reference(reference) = &*arg.ty {
            errors.at(
                reference,
                "service method arguments must be owned types (`String`, not `&str`): \
                 the server decodes them from the request",
            );
            continue;
        }
        args.push(Arg {
            name: pat.ident.clone(),
            ty: (*arg.ty).clone(),
            serde,
        });
    }

    let returns: Type = match &sig.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if let Type::ImplTrait(_) = returns {
        errors.at(
            &returns,
            "write the value a service method answers (`async fn f(&self) -> T`), \
             not `impl Trait`",
        );
    }
    let stream = stream_item(&returns);
    let kind = if notification {
        if !is_unit(&returns) {
            errors.at(
                &returns,
                format_args!(
                    "#[notification] method `{name}` returns nothing: nobody waits for \
                     an answer to a notification"
                ),
            );
        }
        Kind::Notification
    } else if stream.is_some() {
        Kind::Stream
    } else {
        Kind::Request
    };
    let output = match (stream, result_arguments(&returns)) {
        (Some(item), _) => Output::Stream(item),
        (None, Some((ok, err))) => {
            if stream_item(&ok).is_some() {
                errors.at(
                    &returns,
                    "a stream method returns `Stream<T>`: to fail, end the stream with an \
                     error (`Stream::try_from_stream`)",
                );
            }
            Output::Fallible {
                ok: Box::new(ok),
                err: Box::new(err),
            }
        }
        (None, None) => Output::Value(returns.clone()),
    };
    let returns = match &output {
        Output::Stream(item) => item.clone(),
        _ => returns,
    };

    if errors.0.is_some() && !before {
        return None;
    }
    Some(Method {
        name,
        attrs: function.attrs.clone(),
        kind,
        context,
        args,
        output,
        returns,
    })
}

fn take_serde_attrs(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (serde, rest) = std::mem::take(attrs)
        .into_iter()
        .partition(|attr| attr.path().is_ident("serde"));
    *attrs = rest;
    serde
}

/// The last path segment, if `ty` is a path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// `Context` or `switchboard::Context`, by its name.
fn is_context(ty: &Type) -> bool {
    last_segment(ty)
        .is_some_and(|segment| segment.ident == "Context" && segment.arguments.is_empty())
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// `T` of a `Stream<T>` (by name: `switchboard::Stream<T>` or `Stream<T>`).
fn stream_item(ty: &Type) -> Option<Type> {
    let segment = last_segment(ty)?;
    if segment.ident != "Stream" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    match arguments.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(item)] => Some(item.clone()),
        _ => None,
    }
}

/// `T` and `E` of a `Result<T, E>` (by name, two type arguments: a
/// one-argument alias such as `switchboard::Result<T>` is a plain value).
fn result_arguments(ty: &Type) -> Option<(Type, Type)> {
    let segment = last_segment(ty)?;
    if segment.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    let mut types = arguments.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(err), None) => Some((ok, err)),
        _ => None,
    }
}

/// A type as text for the service's description: the tokens, without the
/// spaces the token printer puts around punctuation
/// (`Result<i64, DivError>`, not `Result < i64 , DivError >`).
pub fn type_text(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let glued = matches!(prev, Some('<' | '(' | '[' | ':' | '&'))
                || matches!(next, Some('<' | '>' | ',' | ':' | ')' | ']' | ';'));
            if !glued {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::type_text;

    fn text(ty: &str) -> String {
        type_text(&syn::parse_str(ty).expect("a type"))
    }

    #[test]
    fn types_read_as_written() {
        for ty in [
            "i64",
            "()",
            "Vec<String>",
            "Result<i64, DivError>",
            "Option<Vec<u8>>",
            "std::collections::HashMap<String, (u32, bool)>",
            "[u8; 4]",
            "switchboard::Bytes",
        ] {
            assert_eq!(text(ty), ty);
        }
    }
}
