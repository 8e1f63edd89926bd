// Storefront's GraphiQL page: starts GraphiQL with a sign-in control, the Account panel.
//
// The panel signs in with `login`, keeps the session for this tab (sessionStorage), sends its
// access token as `Authorization: Bearer …` with every request GraphiQL makes, renews it with
// `refreshToken` before it expires (and when the server answers TOKEN_EXPIRED), and signs out
// with `logout`. Whenever the token changes, GraphiQL gets a new fetcher, which makes it fetch
// the schema again: the Docs pane and autocompletion always show what the current role may use.
// Subscriptions run over a WebSocket to this origin, with a small graphql-transport-ws client
// of the page's own (`overSocket`).
//
// Plain JavaScript as browsers run it, no build step: React, ReactDOM and GraphiQL are the
// globals their UMD bundles define (served from this origin; see src/http/playground.rs).
(() => {
  'use strict';

  const { React, ReactDOM, GraphiQL } = window;
  const { useEditorContext, Button } = GraphiQL.React;
  const h = React.createElement;

  // Radix UI's scroll lock (GraphiQL's dialogs and menus) adds a <style> element stamped with
  // this nonce, which the page's content security policy allows.
  window.__webpack_nonce__ = document.currentScript.nonce;

  const config = JSON.parse(document.getElementById('storefront-playground').textContent);
  const ACCEPT = 'application/graphql-response+json, application/json';
  const SESSION_KEY = 'storefront.playground.session';
  /** Renew the access token this long before it expires (or halfway, for shorter tokens). */
  const RENEW_BEFORE_MS = 60_000;
  /** When a renewal could not reach the server, try again after this long. */
  const RETRY_MS = 15_000;
  /** The reasons an access token is refused for that a refresh may cure. */
  const RENEWABLE = new Set(['TOKEN_EXPIRED', 'TOKEN_INVALID', 'SESSION_ENDED']);

  const LOGIN = `mutation StorefrontPlaygroundLogin($input: LoginInput!) {
  login(input: $input) { accessToken expiresIn refreshToken account { username role } }
}`;
  const REFRESH = `mutation StorefrontPlaygroundRefresh($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) { accessToken expiresIn refreshToken account { username role } }
}`;
  const LOGOUT = `mutation StorefrontPlaygroundLogout($refreshToken: String!) {
  logout(refreshToken: $refreshToken)
}`;
  /** Ends the session of the access token sent with it. */
  const LOGOUT_BY_ACCESS_TOKEN = `mutation StorefrontPlaygroundLogoutByAccessToken {
  logout
}`;

  // ---------------------------------------------------------------------------------------
  // What GraphiQL keeps (editor tabs, variables, headers, history) lives as long as the tab,
  // like the session: the editors hold passwords typed into `register` or `changePassword` and
  // tokens pasted into the Headers pane, which must not outlive the tab in localStorage, where
  // GraphiQL keeps them unless given a storage. Its keys start with `graphiql:`.

  const GRAPHIQL_PREFIX = 'graphiql:';
  const graphiqlKeys = (storage) =>
    Array.from({ length: storage.length }, (_, i) => storage.key(i)).filter((key) =>
      key?.startsWith(GRAPHIQL_PREFIX),
    );
  const TAB_STORAGE = {
    getItem: (key) => sessionStorage.getItem(key),
    setItem: (key, value) => sessionStorage.setItem(key, value),
    removeItem: (key) => sessionStorage.removeItem(key),
    get length() {
      return graphiqlKeys(sessionStorage).length;
    },
    clear() {
      for (const key of graphiqlKeys(sessionStorage)) sessionStorage.removeItem(key);
    },
  };
  // What an earlier version of this page let GraphiQL leave in localStorage goes now.
  try {
    for (const key of graphiqlKeys(localStorage)) localStorage.removeItem(key);
  } catch {
    // Storage blocked by the browser: nothing was kept there either.
  }

  // ---------------------------------------------------------------------------------------
  // The session of this tab: `{ accessToken, refreshToken, issuedAt, expiresAt, account }`.

  let state = { session: readSession(), busy: false, notice: null };
  const listeners = new Set();
  let renewal = null;
  let timer = null;

  function readSession() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY));
      const valid =
        stored &&
        typeof stored.accessToken === 'string' &&
        typeof stored.refreshToken === 'string' &&
        Number.isFinite(stored.issuedAt) &&
        Number.isFinite(stored.expiresAt) &&
        typeof stored.account?.username === 'string' &&
        typeof stored.account?.role === 'string';
      return valid ? stored : null;
    } catch {
      return null;
    }
  }

  function update(patch) {
    state = { ...state, ...patch };
    if ('session' in patch) {
      if (state.session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
      else sessionStorage.removeItem(SESSION_KEY);
      schedule();
    }
    for (const listener of listeners) listener();
  }

  const subscribe = (listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  };
  const useSession = () => React.useSyncExternalStore(subscribe, () => state);

  /** The session a sign-in or refresh answered with. */
  function sessionFrom(payload) {
    const now = Date.now();
    return {
      accessToken: payload.accessToken,
      refreshToken: payload.refreshToken,
      issuedAt: now,
      expiresAt: now + payload.expiresIn * 1000,
      account: { username: payload.account.username, role: payload.account.role },
    };
  }

  /** When the access token of `session` should be renewed. */
  function renewAt(session) {
    const lifetime = session.expiresAt - session.issuedAt;
    return session.expiresAt - Math.min(RENEW_BEFORE_MS, lifetime / 2);
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = null;
    if (!state.session) return;
    const wait = delay ?? Math.max(0, renewAt(state.session) - Date.now());
    timer = setTimeout(() => renew(), wait);
  }

  /**
   * Posts an operation of the panel's own (never with the session's token, so an expired one
   * cannot get in the way). Resolves to the GraphQL answer, or null when the answer is not one;
   * rejects when the server cannot be reached.
   */
  async function post(query, variables, accessToken) {
    const response = await fetch(config.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: ACCEPT,
        ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
    });
    return response.json().catch(() => null);
  }

  /** What to tell the person about a refused sign-in: never more than the API said. */
  function signInProblem(error) {
    const extensions = error?.extensions ?? {};
    switch (extensions.code) {
      case 'UNAUTHENTICATED':
        return 'Wrong username or password.';
      case 'TOO_MANY_REQUESTS':
        return Number.isFinite(extensions.retryAfter)
          ? `Too many attempts. Try again in ${extensions.retryAfter} s.`
          : 'Too many attempts. Try again later.';
      case 'BAD_USER_INPUT':
        return typeof error.message === 'string' ? error.message : 'Check the username and password.';
      default:
        return 'Signing in failed. Try again.';
    }
  }

  async function signIn(username, password) {
    update({ busy: true, notice: null });
    try {
      const body = await post(LOGIN, { input: { username, password } });
      if (body?.data?.login) {
        update({ session: sessionFrom(body.data.login), notice: null });
        return true;
      }
      update({ notice: { kind: 'error', text: signInProblem(body?.errors?.[0]) } });
    } catch {
      update({ notice: { kind: 'error', text: 'The server could not be reached. Try again.' } });
    } finally {
      update({ busy: false });
    }
    return false;
  }

  /**
   * Trades the refresh token for a new pair, once for any number of callers at a time.
   * Resolves to whether the session has a fresh access token.
   */
  function renew() {
    if (!state.session) return Promise.resolve(false);
    renewal ??= refreshNow().finally(() => {
      renewal = null;
    });
    return renewal;
  }

  async function refreshNow() {
    const spent = state.session;
    let body;
    try {
      body = await post(REFRESH, { refreshToken: spent.refreshToken });
    } catch {
      if (state.session === spent) schedule(RETRY_MS);
      return false;
    }
    if (state.session !== spent) return Boolean(state.session);
    if (body?.data?.refreshToken) {
      update({ session: sessionFrom(body.data.refreshToken) });
      return true;
    }
    const extensions = body?.errors?.[0]?.extensions ?? {};
    if (extensions.code === 'UNAUTHENTICATED') {
      update({
        session: null,
        notice: { kind: 'info', text: 'Your session has ended. Sign in again.' },
      });
    } else {
      const wait = Number.isFinite(extensions.retryAfter) ? extensions.retryAfter * 1000 : RETRY_MS;
      schedule(wait);
    }
    return false;
  }

  async function signOut() {
    const ending = state.session;
    if (!ending) return;
    update({ busy: true, notice: null });
    let ended = false;
    try {
      ended = (await post(LOGOUT, { refreshToken: ending.refreshToken }))?.data?.logout === true;
    } catch {
      ended = false;
    }
    // Refused (the sign-in rate limit counts it, or the network failed): the access token,
    // while it lasts, ends the same session.
    if (!ended && Date.now() < ending.expiresAt) {
      try {
        ended = (await post(LOGOUT_BY_ACCESS_TOKEN, {}, ending.accessToken))?.data?.logout === true;
      } catch {
        ended = false;
      }
    }
    update({
      session: null,
      busy: false,
      notice: ended
        ? { kind: 'info', text: 'Signed out.' }
        : { kind: 'error', text: 'Signed out of this tab, but the server could not be told.' },
    });
  }

  /** The access token to send now, renewed first when it is about to expire. */
  async function currentAccessToken() {
    if (state.session && Date.now() >= renewAt(state.session)) await renew();
    return state.session?.accessToken ?? null;
  }

  /** Whether an answer refuses the access token for a reason a refresh may cure. */
  async function refusesToken(response) {
    try {
      const body = await response.clone().json();
      return (body?.errors ?? []).some(
        (e) => e?.extensions?.code === 'UNAUTHENTICATED' && RENEWABLE.has(e.extensions.reason),
      );
    } catch {
      return false;
    }
  }

  /**
   * `fetch` for GraphiQL: adds the session's token unless the Headers pane sets an
   * Authorization header of its own, and on a refused token renews it and tries once more.
   */
  async function fetchWithSession(url, init = {}) {
    const send = async () => {
      const headers = new Headers(init.headers);
      if (!headers.has('accept')) headers.set('accept', ACCEPT);
      let token = null;
      if (!headers.has('authorization')) {
        token = await currentAccessToken();
        if (token) headers.set('authorization', `Bearer ${token}`);
      }
      return { response: await fetch(url, { ...init, headers, credentials: 'omit' }), token };
    };
    const first = await send();
    if (first.token && (await refusesToken(first.response)) && (await renew())) {
      return (await send()).response;
    }
    return first.response;
  }

  // ---------------------------------------------------------------------------------------
  // Subscriptions: each one runs over a WebSocket of its own to this origin's /graphql (wss:
  // when the page came over https:), speaking graphql-transport-ws (see docs/api.md). The
  // socket opens when the subscription starts and closes when it ends, so a new token (sign-in,
  // renewal, sign-out) is the one the next socket sends.

  const WS_PROTOCOL = 'graphql-transport-ws';
  /** The one operation a socket carries. */
  const OPERATION_ID = '1';
  /** Why the server closes a socket (4403) that a renewed token may reopen. */
  const REOPENABLE = new Set(['token expired', 'session ended']);

  /** The WebSocket URL of the endpoint: this origin, ws: or wss: as the page's scheme. */
  function socketUrl() {
    const url = new URL(config.endpoint, window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  /** Whether the operation GraphiQL runs (`operationName`, or the only one) is a subscription. */
  function isSubscription(document, operationName) {
    const operations = (document?.definitions ?? []).filter((d) => d.kind === 'OperationDefinition');
    const operation = operationName
      ? operations.find((d) => d.name?.value === operationName)
      : operations.length === 1
        ? operations[0]
        : undefined;
    return operation?.operation === 'subscription';
  }

  /** The Authorization header the Headers pane sets, if any (GraphiQL hands its JSON over). */
  function ownAuthorization(headers) {
    const entry = Object.entries(headers ?? {}).find(([name]) => name.toLowerCase() === 'authorization');
    return entry ? String(entry[1]) : null;
  }

  /**
   * A subscription as GraphiQL takes it from a fetcher, an observable: each `next` the server
   * sends goes to the result pane as it arrives, and GraphiQL's Stop sends `complete` and closes
   * the socket. The socket sends the session's access token in `connection_init` (or the
   * Headers pane's Authorization). When the server refuses the session's token (4403 before
   * `connection_ack`) or ends the subscription because the token expired or the session's
   * tokens were revoked (4403 `token expired` / `session ended`), the token is renewed, once,
   * and the subscription starts again on a new socket; any other close ends it with an error.
   */
  function overSocket(params, headers) {
    return {
      subscribe(observer) {
        const authorization = ownAuthorization(headers);
        let socket = null;
        // The socket the operation was sent on (`subscribe`), once it was.
        let subscribedOn = null;
        let ended = false;
        // Whether a 4403 may renew the token and reopen: once per acknowledged socket.
        let mayReopen = true;

        const end = (how) => {
          if (ended) return;
          ended = true;
          how();
        };
        const send = (target, message) => {
          if (target.readyState === WebSocket.OPEN) target.send(JSON.stringify(message));
        };

        async function open() {
          const token = authorization === null ? await currentAccessToken() : null;
          if (ended) return;
          const sent = authorization ?? (token ? `Bearer ${token}` : null);
          const current = new WebSocket(socketUrl(), WS_PROTOCOL);
          socket = current;
          let acknowledged = false;
          current.onopen = () => {
            if (ended) current.close(1000, 'Normal Closure');
            else send(current, { type: 'connection_init', payload: sent ? { Authorization: sent } : {} });
          };
          current.onmessage = (event) => {
            if (ended) return;
            let message;
            try {
              message = JSON.parse(event.data);
            } catch {
              message = null;
            }
            switch (message?.type) {
              case 'connection_ack':
                acknowledged = true;
                mayReopen = true;
                send(current, { id: OPERATION_ID, type: 'subscribe', payload: params });
                subscribedOn = current;
                break;
              case 'ping':
                send(current, { type: 'pong' });
                break;
              case 'next':
                if (message.id === OPERATION_ID) observer.next(message.payload);
                break;
              case 'error':
                // The operation was refused before it ran: its errors, as an answer would carry them.
                if (message.id === OPERATION_ID) {
                  observer.next({ errors: message.payload });
                  end(() => observer.complete());
                  current.close(1000, 'Normal Closure');
                }
                break;
              case 'complete':
                if (message.id === OPERATION_ID) {
                  end(() => observer.complete());
                  current.close(1000, 'Normal Closure');
                }
                break;
              default:
                break;
            }
          };
          current.onclose = async (event) => {
            if (ended || socket !== current) return;
            const refused = event.code === 4403 && (!acknowledged || REOPENABLE.has(event.reason));
            if (refused && token && mayReopen) {
              mayReopen = false;
              // Renewed already (the socket outlived its token): the new token will do. Signed
              // out meanwhile: the subscription ends.
              const renewed =
                Boolean(state.session) && (state.session.accessToken !== token || (await renew()));
              if (renewed && !ended) {
                open().catch(fail);
                return;
              }
            }
            const reason = event.reason ? ` (${event.reason})` : '';
            fail(new Error(`The subscription's socket closed with code ${event.code}${reason}.`));
          };
        }

        const fail = (error) => end(() => observer.error(error));
        open().catch(fail);
        return {
          unsubscribe() {
            end(() => {});
            const current = socket;
            if (current?.readyState === WebSocket.OPEN) {
              if (subscribedOn === current) send(current, { id: OPERATION_ID, type: 'complete' });
              current.close(1000, 'Normal Closure');
            }
            // Still connecting: `onopen` closes it.
          },
        };
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // The page.

  const docs = config.documents;
  const startedSignedIn = Boolean(state.session);

  function AccountIcon(props) {
    return h(
      'svg',
      { ...props, viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', strokeWidth: 1.5 },
      h('circle', { cx: 12, cy: 8, r: 4 }),
      h('path', { d: 'M4 21c0-4.4 3.6-8 8-8s8 3.6 8 8', strokeLinecap: 'round' }),
    );
  }

  function Notice({ notice }) {
    if (!notice) return null;
    return h(
      'p',
      {
        className: `storefront-notice storefront-notice-${notice.kind}`,
        role: notice.kind === 'error' ? 'alert' : 'status',
      },
      notice.text,
    );
  }

  function SignInForm({ busy }) {
    const [username, setUsername] = React.useState('');
    const [password, setPassword] = React.useState('');
    const submit = async (event) => {
      event.preventDefault();
      if (await signIn(username.trim(), password)) setUsername('');
      setPassword('');
    };
    return h(
      'form',
      { className: 'storefront-form', onSubmit: submit, 'aria-label': 'Sign in' },
      h(
        'label',
        null,
        'Username',
        h('input', {
          name: 'username',
          autoComplete: 'username',
          required: true,
          value: username,
          onChange: (e) => setUsername(e.target.value),
        }),
      ),
      h(
        'label',
        null,
        'Password',
        h('input', {
          name: 'password',
          type: 'password',
          autoComplete: 'current-password',
          required: true,
          value: password,
          onChange: (e) => setPassword(e.target.value),
        }),
      ),
      h(Button, { type: 'submit', disabled: busy }, busy ? 'Signing in…' : 'Sign in'),
    );
  }

  function AccountPanel() {
    const { session, busy, notice } = useSession();
    const body = session
      ? h(
          React.Fragment,
          null,
          h(
            'p',
            { className: 'storefront-who' },
            'Signed in as ',
            h('strong', null, session.account.username),
            ' (role ',
            h('strong', null, session.account.role),
            ').',
          ),
          h(
            'p',
            { className: 'storefront-hint' },
            'Every request from this tab carries your access token, renewed before it expires. ',
            'An Authorization header in the Headers pane takes its place.',
          ),
          h(Button, { type: 'button', onClick: signOut, disabled: busy }, busy ? 'Signing out…' : 'Sign out'),
        )
      : h(
          React.Fragment,
          null,
          h(
            'p',
            { className: 'storefront-hint' },
            'Sign in to use what your role may do. The session lasts as long as this tab.',
          ),
          h(SignInForm, { busy }),
        );
    return h(
      'div',
      { className: 'storefront-account' },
      h('div', { className: 'graphiql-doc-explorer-title' }, 'Account'),
      body,
      h(Notice, { notice }),
      h(
        'p',
        { className: 'storefront-hint storefront-licences' },
        h('a', { href: config.licences, target: '_blank', rel: 'noopener' }, 'Licences'),
        ' of React and GraphiQL, served from this server.',
      ),
    );
  }

  const ACCOUNT = { title: 'Account', icon: AccountIcon, content: AccountPanel };
  const PLUGINS = [ACCOUNT];

  /**
   * Opens the Account panel as its sidebar button does (GraphiQL sizes the pane in that
   * button's handler, so choosing the plugin alone would leave the pane shut). Right after
   * GraphiQL mounts, the button appears once GraphiQL has registered the plugins.
   */
  function showAccountPanel(attempts = 40) {
    const button = document.querySelector('.graphiql-sidebar button[aria-label="Show Account"]');
    if (button) button.click();
    else if (attempts > 0) setTimeout(() => showAccountPanel(attempts - 1), 25);
  }

  /**
   * Who is looking, in the header; it opens the Account panel. It also keeps the opening
   * document right for them: while the editor holds one of the two openings unchanged, it is
   * the one for the current visitor.
   */
  function Viewer() {
    const { session } = useSession();
    const { queryEditor } = useEditorContext({ nonNull: true });
    const signedIn = Boolean(session);
    // A visitor who is not signed in lands on the Account panel.
    React.useEffect(() => {
      if (!startedSignedIn) showAccountPanel();
    }, []);
    React.useEffect(() => {
      if (!queryEditor) return;
      const wanted = signedIn ? docs.signedIn : docs.anonymous;
      const other = signedIn ? docs.anonymous : docs.signedIn;
      if (queryEditor.getValue().trim() === other.trim()) queryEditor.setValue(wanted);
    }, [queryEditor, signedIn]);
    return h(
      'button',
      {
        type: 'button',
        className: 'storefront-viewer',
        onClick: () => showAccountPanel(),
        title: 'Show the Account panel',
      },
      h('span', { className: 'storefront-name' }, 'Storefront'),
      session
        ? h('span', { className: 'storefront-badge storefront-signed-in' }, `${session.account.username} · ${session.account.role}`)
        : h('span', { className: 'storefront-badge' }, 'not signed in'),
    );
  }

  function Playground() {
    const { session } = useSession();
    const token = session?.accessToken ?? null;
    // A new fetcher for each token: GraphiQL fetches the schema again when its fetcher changes.
    // Subscriptions go over a socket, everything else over HTTP.
    const fetcher = React.useMemo(() => {
      const overHttp = GraphiQL.createFetcher({
        url: config.endpoint,
        fetch: fetchWithSession,
        enableIncrementalDelivery: false,
      });
      return (params, options) =>
        isSubscription(options?.documentAST, params.operationName)
          ? overSocket(params, options?.headers)
          : overHttp(params, options);
    }, [token]);
    return h(
      GraphiQL,
      {
        fetcher,
        defaultQuery: startedSignedIn ? docs.signedIn : docs.anonymous,
        plugins: PLUGINS,
        storage: TAB_STORAGE,
      },
      h(GraphiQL.Logo, null, h(Viewer)),
    );
  }

  // A session from before a reload whose token is (nearly) expired is renewed at once.
  schedule();
  ReactDOM.createRoot(document.getElementById('graphiql')).render(h(Playground));
})();
