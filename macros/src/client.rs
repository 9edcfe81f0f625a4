//! The typed client: `<Trait>Client`, one method per trait method, each
//! sending an ordinary request (or notification) whose parameters are an
//! object of the method's named arguments.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{Kind, Method, Output, Service};

pub fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let name = service.name();
    let client = format_ident!("{}Client", name);
    let doc = format!(
        "A typed client of the [`{name}`] service: each method sends a request to the \
         route `{name}.<method>` and decodes the answer.\n\n\
         Cheap to clone (clones share the connection). Built from a connected \
         [`Client`](::switchboard::Client) ([`{client}::new`]), a \
         [`Peer`](::switchboard::Peer) ([`{client}::from_peer`], e.g. to call back a \
         client from a handler's `Context`) or a connector ([`{client}::connect`]). \
         Dropping a call's future cancels it on the server."
    );
    let methods = service
        .methods
        .iter()
        .map(|method| method_tokens(service, method));
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            caller: ::switchboard::__private::Caller,
        }

        impl #client {
            /// Calls the service over `client`'s connection, which stays open as
            /// long as any clone of `client` or of this typed client lives (pass
            /// `client.clone()` to keep using `client` for other routes or
            /// `close()`).
            #vis fn new(client: ::switchboard::Client) -> Self {
                Self { caller: ::switchboard::__private::Caller::from_client(client) }
            }

            /// Calls the service on the other side of `peer` (a server's
            /// connection to a client, or a handler's `Context::peer`).
            #vis fn from_peer(peer: ::switchboard::Peer) -> Self {
                Self { caller: ::switchboard::__private::Caller::from_peer(peer) }
            }

            /// Connects to the server at `connector` with the default settings.
            #vis async fn connect(
                connector: &::switchboard::Connector,
            ) -> ::switchboard::Result<Self> {
                ::switchboard::__private::Caller::connect(connector)
                    .await
                    .map(|caller| Self { caller })
            }

            /// A clone whose requests wait at most `timeout` for their answer
            /// (instead of the connection's default); a request that times out
            /// is cancelled on the server and fails with `Error::Timeout`.
            /// Notifications are not affected.
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { caller: self.caller.with_timeout(timeout) }
            }

            /// The connection this client calls over (for a client that
            /// reconnects, the current one).
            #vis fn peer(&self) -> ::switchboard::Peer {
                self.caller.peer()
            }

            #(#methods)*
        }

        impl ::core::convert::From<::switchboard::Client> for #client {
            fn from(client: ::switchboard::Client) -> Self {
                Self::new(client)
            }
        }

        impl ::core::convert::From<::switchboard::Peer> for #client {
            fn from(peer: ::switchboard::Peer) -> Self {
                Self::from_peer(peer)
            }
        }
    }
}

fn method_tokens(service: &Service, method: &Method) -> TokenStream {
    let vis = &service.item.vis;
    let name = &method.name;
    let attrs = &method.attrs;
    let route = method.route(service.name());
    let arg_names: Vec<_> = method.args.iter().map(|arg| &arg.name).collect();
    let arg_types: Vec<_> = method.args.iter().map(|arg| &arg.ty).collect();
    let params = params(method);
    let (output, call) = match (&method.kind, &method.output) {
        (Kind::Notification, _) => (quote!(()), quote!(notify)),
        (_, Output::Stream(item)) => (quote!(::switchboard::Stream<#item>), quote!(request_stream)),
        (_, Output::Value(ty)) => (quote!(#ty), quote!(request)),
        (_, Output::Fallible { ok, err }) => (
            quote!(::core::result::Result<#ok, #err>),
            quote!(request_fallible),
        ),
    };
    quote! {
        #(#attrs)*
        #vis async fn #name(&self, #( #arg_names: #arg_types ),*) -> ::switchboard::Result<#output> {
            #params
            self.caller.#call(#route, &params).await
        }
    }
}

/// The statements that put a method's arguments, by reference, into
/// `params`: a struct serialized as an object of the named arguments
/// (named so that it cannot shadow a type of the user's).
pub fn params(method: &Method) -> TokenStream {
    let arg_names: Vec<_> = method.args.iter().map(|arg| &arg.name).collect();
    let arg_types: Vec<_> = method.args.iter().map(|arg| &arg.ty).collect();
    let arg_serde: Vec<_> = method.args.iter().map(|arg| &arg.serde).collect();
    let lifetime = (!method.args.is_empty()).then(|| quote!(<'__p>));
    quote! {
        #[derive(::switchboard::__private::serde::Serialize)]
        #[serde(crate = "::switchboard::__private::serde")]
        struct __SwitchboardParams #lifetime {
            #( #(#arg_serde)* #arg_names: &'__p #arg_types, )*
        }
        let params = __SwitchboardParams { #( #arg_names: &#arg_names, )* };
    }
}
