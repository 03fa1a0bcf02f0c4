"""Read rendered pages the way a browser would: elements, their text, and what a form submits."""

from html.parser import HTMLParser

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    def __init__(self, tag: str, attrs: dict):
        self.tag = tag
        self.attrs = attrs
        self.text = ""

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>"


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {name: ("" if value is None else value) for name, value in attrs})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(tag, {name: ("" if value is None else value) for name, value in attrs}))

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        for element in self._open:
            element.text += data


def elements(html: bytes | str, tag: str | None = None) -> list[Element]:
    """Every element of the page (or every `tag`), in document order, each with its text content."""
    parser = _PageParser()
    parser.feed(html.decode() if isinstance(html, bytes) else html)
    parser.close()
    return [element for element in parser.elements if tag is None or element.tag == tag]


def form_values(html: bytes | str, form_id: str | None = None) -> dict[str, list[str]]:
    """What a browser would submit for the page's form (or the form with id `form_id`) untouched."""
    values: dict[str, list[str]] = {}
    in_form = form_id is None
    select_name = None
    select_options: list[Element] = []
    for element in elements(html):
        attrs = element.attrs
        if element.tag == "form" and form_id is not None:
            in_form = attrs.get("id") == form_id
        if not in_form:
            continue
        name = attrs.get("name")
        if element.tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in {"submit", "button", "image", "reset", "file"}:
                continue
            if kind in {"checkbox", "radio"} and "checked" not in attrs:
                continue
            values.setdefault(name, []).append(attrs.get("value", "on" if kind in {"checkbox", "radio"} else ""))
        elif element.tag == "textarea" and name:
            # The parser keeps the text of the first line break that HTML drops.
            values.setdefault(name, []).append(element.text.removeprefix("\n"))
        elif element.tag == "select" and name:
            select_name, select_options = name, []
            values.setdefault(name, [])
        elif element.tag == "option" and select_name is not None:
            select_options.append(element)
            chosen = [o for o in select_options if "selected" in o.attrs]
            values[select_name] = [(chosen or select_options)[0].attrs.get("value", "")] if select_options else []
    return values
