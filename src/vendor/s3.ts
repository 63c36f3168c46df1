/**
 * The part of the AWS SDK's S3 client that we use, as one module: the client and the commands of
 * our stores. `npm run build` replaces this file's output with a bundle of the SDK's ES module
 * build from node_modules, tree-shaken to these exports (`npm run bundle:vendor`, esbuild). Why:
 * `@aws-sdk/client-s3` loads as its CommonJS build, every command of S3 and their serializers
 * included; that costs each command that opens an `s3://` location a quarter of a CPU second
 * before its first request. Without that step (tsc alone) this file is a plain re-export and
 * behaves the same.
 */
export {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
export type { CompletedPart } from "@aws-sdk/client-s3";
