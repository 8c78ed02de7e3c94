// Talking to `inpaintkit serve`: every error becomes an ApiError whose message the page shows.

export class ApiError extends Error {}

/**
 * fetch() that throws ApiError with the server's one-line message on a 4xx/5xx answer.
 * Returns the parsed JSON for JSON answers, the Response otherwise.
 */
export async function api(url, { method = "GET", body, type } = {}) {
  let response;
  try {
    response = await fetch(url, { method, body, headers: type ? { "Content-Type": type } : {} });
  } catch {
    throw new ApiError("the server does not answer (is `inpaintkit serve` still running?)");
  }
  const json = (response.headers.get("content-type") || "").includes("application/json");
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (json) {
      try {
        message = (await response.json()).error || message;
      } catch {
        // keep the status line
      }
    }
    throw new ApiError(message);
  }
  return json ? response.json() : response;
}

/** An <img> loaded and decoded from `url`; ApiError if it cannot be. */
export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new ApiError(`cannot load ${url}`));
    image.src = url;
  });
}

/** A canvas's pixels as a PNG Blob. */
export function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/** Let the browser save `href` (a URL or an object URL) as `name`. */
export function download(href, name) {
  const link = document.createElement("a");
  link.href = href;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

/** "photo.jpg" -> "photo". */
export function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}
