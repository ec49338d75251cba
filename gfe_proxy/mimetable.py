"""The fixed extension → media type table for static files (SPEC STATIC-2).

Fixed so a response does not depend on the host's ``/etc/mime.types`` (which differs between
machines and changes ``.js`` or ``.ico`` answers). Types follow IANA registrations and the
WHATWG choices browsers expect (``text/javascript`` per RFC 9239). No ``charset`` parameter:
App Engine serves static files with the bare type.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["DEFAULT_TYPE", "MIME_TYPES", "guess_type"]

DEFAULT_TYPE = "application/octet-stream"  # SPEC STATIC-2: no mime_type, unknown extension

MIME_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        # text and documents
        "html": "text/html",
        "htm": "text/html",
        "shtml": "text/html",
        "xhtml": "application/xhtml+xml",
        "css": "text/css",
        "txt": "text/plain",
        "text": "text/plain",
        "csv": "text/csv",
        "tsv": "text/tab-separated-values",
        "md": "text/markdown",
        "markdown": "text/markdown",
        "ics": "text/calendar",
        "vtt": "text/vtt",
        "xml": "text/xml",
        "xsl": "text/xml",
        "rss": "application/rss+xml",
        "atom": "application/atom+xml",
        "rtf": "application/rtf",
        "pdf": "application/pdf",
        "appcache": "text/cache-manifest",
        # scripts and data
        "js": "text/javascript",
        "mjs": "text/javascript",
        "cjs": "text/javascript",
        "json": "application/json",
        "map": "application/json",
        "jsonld": "application/ld+json",
        "geojson": "application/geo+json",
        "webmanifest": "application/manifest+json",
        "wasm": "application/wasm",
        "yaml": "text/yaml",
        "yml": "text/yaml",
        # images
        "png": "image/png",
        "apng": "image/apng",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "jpe": "image/jpeg",
        "gif": "image/gif",
        "webp": "image/webp",
        "avif": "image/avif",
        "heic": "image/heic",
        "svg": "image/svg+xml",
        "svgz": "image/svg+xml",
        "ico": "image/x-icon",
        "bmp": "image/bmp",
        "tif": "image/tiff",
        "tiff": "image/tiff",
        # fonts
        "woff": "font/woff",
        "woff2": "font/woff2",
        "ttf": "font/ttf",
        "otf": "font/otf",
        "eot": "application/vnd.ms-fontobject",
        # audio and video
        "mp3": "audio/mpeg",
        "m4a": "audio/mp4",
        "aac": "audio/aac",
        "wav": "audio/wav",
        "flac": "audio/flac",
        "oga": "audio/ogg",
        "ogg": "audio/ogg",
        "opus": "audio/ogg",
        "weba": "audio/webm",
        "mid": "audio/midi",
        "midi": "audio/midi",
        "mp4": "video/mp4",
        "m4v": "video/mp4",
        "mpeg": "video/mpeg",
        "mpg": "video/mpeg",
        "ogv": "video/ogg",
        "webm": "video/webm",
        "mov": "video/quicktime",
        "avi": "video/x-msvideo",
        "ts": "video/mp2t",
        "m3u8": "application/vnd.apple.mpegurl",
        # archives and binaries
        "zip": "application/zip",
        "gz": "application/gzip",
        "tgz": "application/gzip",
        "bz2": "application/x-bzip2",
        "xz": "application/x-xz",
        "7z": "application/x-7z-compressed",
        "tar": "application/x-tar",
        "rar": "application/vnd.rar",
        "jar": "application/java-archive",
        "apk": "application/vnd.android.package-archive",
        "exe": "application/octet-stream",
        "bin": "application/octet-stream",
        "swf": "application/x-shockwave-flash",
        # office
        "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt": "application/vnd.ms-powerpoint",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt": "application/vnd.oasis.opendocument.text",
        "epub": "application/epub+zip",
    }
)


def guess_type(path: str) -> str:
    """Media type for ``path`` by its last extension, case-insensitively (SPEC STATIC-2).

    ``guess_type("static/app.min.JS") == "text/javascript"``; no or unknown extension →
    ``application/octet-stream``. A leading dot alone (``.htaccess``) is not an extension.
    """
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    if dot <= 0:
        return DEFAULT_TYPE
    return MIME_TYPES.get(name[dot + 1 :].lower(), DEFAULT_TYPE)
