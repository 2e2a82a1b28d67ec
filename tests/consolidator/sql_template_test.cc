// The SQL tokenizer and rewriter: named parameters become ?N / $N, and nothing inside literals,
// quoted identifiers, comments, casts or dollar quotes is ever taken for a parameter.
#include "sql_template.h"

#include <gtest/gtest.h>

namespace sidelog::consolidator {
namespace {

SqlStatement One(const std::string& sql, Dialect d) {
  auto r = ParseSql(sql, d);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok() || r->size() != 1) {
    ADD_FAILURE() << "expected one statement from: " << sql;
    return {};
  }
  return r->front();
}

using Names = std::vector<std::string>;

TEST(SqlTemplate, RewritesNamedParametersToSqliteNumbers) {
  auto s = One("INSERT INTO t (a, b) VALUES (:entity, :data.amount)", Dialect::kSqlite);
  EXPECT_EQ(s.text, "INSERT INTO t (a, b) VALUES (?1, ?2)");
  EXPECT_EQ(s.parameters, (Names{"entity", "data.amount"}));
}

TEST(SqlTemplate, RewritesNamedParametersToPostgresNumbers) {
  auto s = One("UPDATE t SET x = :data.a.b WHERE id = :entity", Dialect::kPostgres);
  EXPECT_EQ(s.text, "UPDATE t SET x = $1 WHERE id = $2");
  EXPECT_EQ(s.parameters, (Names{"data.a.b", "entity"}));
}

TEST(SqlTemplate, ARepeatedNameReusesItsNumber) {
  auto s = One("SELECT :id, :other, :id", Dialect::kPostgres);
  EXPECT_EQ(s.text, "SELECT $1, $2, $1");
  EXPECT_EQ(s.parameters, (Names{"id", "other"}));
}

TEST(SqlTemplate, AMarkNeverMergesWithAnIdentifierBesideIt) {
  // PostgreSQL identifiers may hold '$': "a$1" would be one identifier, and "$1$$" would
  // open a dollar quote the original did not have.
  auto pg = One("SELECT a:entity$$x$$", Dialect::kPostgres);
  EXPECT_EQ(pg.text, "SELECT a $1 $$x$$");
  EXPECT_EQ(pg.parameters, (Names{"entity"}));
  auto again = ParseSql(pg.text, Dialect::kPostgres);
  EXPECT_FALSE(again.ok()) << "a hand-written $1 is refused, so the mark stands alone";
  EXPECT_EQ(One("SELECT x:id", Dialect::kSqlite).text, "SELECT x ?1");
}

TEST(SqlTemplate, StringLiteralsWithDoubledQuotesAreText) {
  auto s = One("SELECT 'it''s :not a param', :yes", Dialect::kSqlite);
  EXPECT_EQ(s.text, "SELECT 'it''s :not a param', ?1");
  EXPECT_EQ(s.parameters, (Names{"yes"}));
}

TEST(SqlTemplate, PostgresEscapeStringsHonourBackslashes) {
  auto s = One(R"(SELECT E'it\'s :not', :yes)", Dialect::kPostgres);
  EXPECT_EQ(s.text, R"(SELECT E'it\'s :not', $1)");
  EXPECT_EQ(s.parameters, (Names{"yes"}));
  // In a plain literal a backslash is just a character.
  auto plain = One(R"(SELECT 'a\', :yes)", Dialect::kPostgres);
  EXPECT_EQ(plain.parameters, (Names{"yes"}));
}

TEST(SqlTemplate, QuotedIdentifiersAreText) {
  auto s = One(R"(SELECT "a:b"""":c" FROM t WHERE x = :x)", Dialect::kPostgres);
  EXPECT_EQ(s.parameters, (Names{"x"}));
  auto sqlite = One("SELECT `a:b`, [c:d] FROM t WHERE x = :x", Dialect::kSqlite);
  EXPECT_EQ(sqlite.text, "SELECT `a:b`, [c:d] FROM t WHERE x = ?1");
}

TEST(SqlTemplate, CommentsAreText) {
  auto s = One("SELECT 1 -- :no\n, /* :no */ :yes", Dialect::kSqlite);
  EXPECT_EQ(s.parameters, (Names{"yes"}));
  EXPECT_EQ(s.text, "SELECT 1 -- :no\n, /* :no */ ?1");
}

TEST(SqlTemplate, PostgresBlockCommentsNest) {
  auto s = One("SELECT /* a /* :no */ still :no */ :yes", Dialect::kPostgres);
  EXPECT_EQ(s.parameters, (Names{"yes"}));
}

TEST(SqlTemplate, CastsAndColonEqualsAreNotParameters) {
  auto s = One("SELECT :data.amount::numeric, f(a := 1), '1'::int", Dialect::kPostgres);
  EXPECT_EQ(s.text, "SELECT $1::numeric, f(a := 1), '1'::int");
  EXPECT_EQ(s.parameters, (Names{"data.amount"}));
}

TEST(SqlTemplate, DollarQuotedStringsAreText) {
  auto s = One("SELECT $$ :no ; 'x $$, $tag$ :no $$ $tag$, :yes", Dialect::kPostgres);
  EXPECT_EQ(s.parameters, (Names{"yes"}));
  EXPECT_EQ(s.text, "SELECT $$ :no ; 'x $$, $tag$ :no $$ $tag$, $1");
}

TEST(SqlTemplate, DollarInsideAnIdentifierIsNotAQuote) {
  auto s = One("SELECT a$b, :yes FROM t$1", Dialect::kPostgres);
  EXPECT_EQ(s.parameters, (Names{"yes"}));
}

TEST(SqlTemplate, SplitsStatementsAtTopLevelSemicolonsOnly) {
  auto r = ParseSql("INSERT INTO a VALUES (';', :x);\n\n  UPDATE b SET c = :y; -- done\n;",
                    Dialect::kSqlite);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].text, "INSERT INTO a VALUES (';', ?1)");
  EXPECT_EQ((*r)[0].line, 1);
  EXPECT_EQ((*r)[1].original, "UPDATE b SET c = :y");
  EXPECT_EQ((*r)[1].parameters, (Names{"y"}));  // numbering restarts per statement
  EXPECT_EQ((*r)[1].text.substr((*r)[1].text.find("UPDATE")), "UPDATE b SET c = ?1");
  EXPECT_EQ((*r)[1].line, 3);
}

TEST(SqlTemplate, ParameterNamesTakeDottedSegmentsButNotATrailingDot) {
  auto s = One("SELECT :data.items.0.sku, :meta.correlationid.", Dialect::kSqlite);
  EXPECT_EQ(s.parameters, (Names{"data.items.0.sku", "meta.correlationid"}));
  EXPECT_EQ(s.text, "SELECT ?1, ?2.");
}

TEST(SqlTemplate, UnterminatedLiteralsAndCommentsAreErrorsWithTheirLine) {
  int line = 0;
  auto lit = ParseSql("SELECT 1;\nSELECT 'oops", Dialect::kSqlite, &line);
  ASSERT_FALSE(lit.ok());
  EXPECT_EQ(line, 2);
  EXPECT_NE(lit.status().message().find("unterminated string literal"), std::string::npos);
  EXPECT_FALSE(ParseSql("SELECT /* never closed", Dialect::kPostgres).ok());
  EXPECT_FALSE(ParseSql("SELECT \"x", Dialect::kPostgres).ok());
  EXPECT_FALSE(ParseSql("SELECT $q$ open", Dialect::kPostgres).ok());
}

TEST(SqlTemplate, HandWrittenPositionalParametersAreRefused) {
  for (const char* sql : {"SELECT ?", "SELECT ?1", "SELECT @x", "SELECT $x"}) {
    auto r = ParseSql(sql, Dialect::kSqlite);
    EXPECT_FALSE(r.ok()) << sql;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(":name"), std::string::npos);
    }
  }
  auto pg = ParseSql("SELECT $1", Dialect::kPostgres);
  ASSERT_FALSE(pg.ok());
  EXPECT_NE(pg.status().message().find("positional"), std::string::npos);
  // PostgreSQL's jsonb operators ? and @> are operators, not parameters.
  EXPECT_TRUE(ParseSql("SELECT d ? 'k', d @> '{}' FROM t", Dialect::kPostgres).ok());
}

TEST(SqlTemplate, EmptyAndCommentOnlyStatementsAreDropped) {
  auto r = ParseSql("; -- nothing\n ; /* x */", Dialect::kSqlite);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

}  // namespace
}  // namespace sidelog::consolidator
