import { fileURLToPath } from "node:url";
import { isAbsolute } from "node:path";
import { z } from "zod";

/** The project's own example handlers: the default, and the only code an endpoint may name unless the operator says otherwise. */
export const defaultHandlerDir = fileURLToPath(new URL("../../images/handler/examples", import.meta.url));

/** `HEARTH_HANDLER_DIRS`: colon-separated absolute directories whose modules endpoints may run. */
export const handlerDirs = z.preprocess(
  (v) => (v === "" || v === undefined ? defaultHandlerDir : v),
  z
    .string()
    .transform((s) => s.split(":").filter(Boolean))
    .pipe(z.array(z.string().refine(isAbsolute, "every directory must be an absolute path")).min(1)),
);
