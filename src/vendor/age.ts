/**
 * The part of the age-encryption library (typage) that we use, as one module. `npm run build`
 * replaces this file's output with a bundle of the library's own code from node_modules,
 * tree-shaken to these exports (`npm run bundle:vendor`, esbuild). Why: loaded as its forty-odd
 * separate modules, the library and its noble dependencies keep an age restore in the module
 * loader, and in setting up what we never call (ed25519 and its hash-to-curve, P-521, OPRF,
 * webauthn, armor), before its first byte is decrypted. The bundle is the same code, fewer
 * modules; without that step (tsc alone) this file is a plain re-export and behaves the same.
 * The tests check our files against the library as published, imported by its own name.
 */
export {
  Decrypter,
  Encrypter,
  generateHybridIdentity,
  generateX25519Identity,
  identityToRecipient,
} from "age-encryption";
