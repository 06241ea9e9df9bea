// src/semantic/guard.h
//
// MatchGuard: the check after the similarity threshold. Two questions can be
// close in embedding space and still want different answers: another year,
// another amount, another city, "is" against "is not". The guard extracts
// those parts from both texts and refuses the candidate, with a reason a
// person can read, when they disagree:
//
//   numbers    every number (digits with their separators, and the number
//              words two..twenty and the tens; "one" is mostly a pronoun)
//              must occur in both, as multisets: "2008" vs "2010", "3 days"
//              vs "5 days"; digits inside a word ("i5", "mp3") are part of
//              the word;
//   units      currency signs and unit words (km, miles, kg, °c, usd, ...)
//              must match as sets: "10 km" vs "10 miles"; an abbreviation
//              of up to three letters is a unit only right after a number
//              ("10 g", "5km"; not the "g" of "e.g." or the "ML" of machine
//              learning);
//   negation   either both texts negate or neither does ("not", "no",
//              "never", "without", "n't", ...);
//   opposites  a word of one text whose opposite stands in the other
//              instead ("gain" / "lose", "buy" / "sell", "men" / "women",
//              "today" / "tomorrow": a fixed list);
//   kinds      a colour, weekday or month of one text against another
//              member of the same set in the other: "red" vs "blue";
//   names      a capitalised word inside a sentence (a likely name: a city,
//              a person, a product; "C++" and "C#" keep their signs) must
//              occur, in any case, in the other; a name with its signs
//              differs from the bare word in any case ("c#" / "c"). A
//              sentence's first word is weaker evidence ("Paris weather", but
//              also "Afterwards, ..."): unless it is a common question word,
//              function word or connective, it refuses only when the other
//              text has such a word of its own in its place;
//
// A typographic apostrophe inside a word reads as "'" ("don’t" negates).
//
// Cheap (one pass over each text, no allocation beyond small vectors) and
// explainable; it errs on the side of refusing, which costs a cache miss,
// never a wrong answer.

#ifndef TOOLOPS_SEMANTIC_GUARD_H_
#define TOOLOPS_SEMANTIC_GUARD_H_

#include <string>
#include <string_view>

namespace toolops {

struct GuardVerdict {
  bool accept = true;
  // Why not, when !accept: "numbers differ (2008 / 2010)".
  std::string reason;
};

class MatchGuard {
 public:
  GuardVerdict Check(std::string_view query, std::string_view candidate) const;
};

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_GUARD_H_
