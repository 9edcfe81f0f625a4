//! The blocking typed client: `<Trait>BlockingClient`, the async client's
//! methods for programs without an async runtime, over a
//! `switchboard::blocking::Client`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::client::params;
use crate::model::{Kind, Method, Output, Service};

pub fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let name = service.name();
    let client = format_ident!("{}Client", name);
    let blocking = format_ident!("{}BlockingClient", name);
    let doc = format!(
        "A blocking typed client of the [`{name}`] service, for programs without an \
         async runtime: the methods of [`{client}`], each waiting on the calling thread \
         (see [`switchboard::blocking`](::switchboard::blocking) for how that runs; like \
         every blocking call they panic inside an async runtime's task). A method \
         answering a stream returns an iterator of its items, \
         [`Items`](::switchboard::blocking::Items).\n\n\
         Cheap to clone, usable from many threads at once. Built from a \
         [`blocking::Client`](::switchboard::blocking::Client) ([`{blocking}::new`]) or \
         a connector ([`{blocking}::connect`])."
    );
    let methods = service
        .methods
        .iter()
        .map(|method| method_tokens(service, method));
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #blocking {
            caller: ::switchboard::__private::BlockingCaller,
        }

        impl #blocking {
            /// Calls the service through `client` (and its clones' connection).
            #vis fn new(client: ::switchboard::blocking::Client) -> Self {
                Self { caller: ::switchboard::__private::BlockingCaller::new(client) }
            }

            /// Connects to the server at `connector` with the default settings.
            #[track_caller]
            #vis fn connect(connector: &::switchboard::Connector) -> ::switchboard::Result<Self> {
                ::switchboard::__private::BlockingCaller::connect(connector)
                    .map(|caller| Self { caller })
            }

            /// A clone whose requests wait at most `timeout` for their answer
            /// (instead of the connection's default); a request that times out
            /// is cancelled on the server and fails with `Error::Timeout`.
            /// Notifications and streams are not affected.
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

        impl ::core::convert::From<::switchboard::blocking::Client> for #blocking {
            fn from(client: ::switchboard::blocking::Client) -> Self {
                Self::new(client)
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
        (_, Output::Stream(item)) => (
            quote!(::switchboard::blocking::Items<#item>),
            quote!(request_stream),
        ),
        (_, Output::Value(ty)) => (quote!(#ty), quote!(request)),
        (_, Output::Fallible { ok, err }) => (
            quote!(::core::result::Result<#ok, #err>),
            quote!(request_fallible),
        ),
    };
    quote! {
        #(#attrs)*
        #[track_caller]
        #vis fn #name(&self, #( #arg_names: #arg_types ),*) -> ::switchboard::Result<#output> {
            #params
            self.caller.#call(#route, &params)
        }
    }
}
